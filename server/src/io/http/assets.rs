//! The storefront's files, built into the binary. Each asset is served
//! under a name carrying a hash of its content (`/assets/app.3f9c2a1b.js`)
//! with `Cache-Control: immutable`, so a browser or CDN keeps it for good
//! and a new build is new names; the page that names them is revalidated.

use bytes::Bytes;

/// `(name, content type, bytes)` of each file in `server/static/`.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../static/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../static/style.css"),
    ),
];

const INDEX: &str = include_str!("../../../static/index.html");

#[derive(Debug)]
pub struct Asset {
    /// `app.3f9c2a1b.js`.
    pub hashed_name: String,
    pub content_type: &'static str,
    pub bytes: Bytes,
}

#[derive(Debug)]
pub struct Assets {
    pub index: Bytes,
    /// The index page's ETag.
    pub index_etag: String,
    pub files: Vec<Asset>,
}

impl Assets {
    /// Names each file by its content and writes the names into the page,
    /// where it says `{{app.js}}`.
    pub fn build() -> Assets {
        let mut index = INDEX.to_owned();
        let mut files = Vec::with_capacity(FILES.len());
        for (name, content_type, bytes) in FILES {
            let hash = xxhash_rust::xxh3::xxh3_64(bytes);
            let (stem, extension) = name.rsplit_once('.').unwrap_or((name, ""));
            let hashed_name = format!("{stem}.{:08x}.{extension}", hash as u32);
            index = index.replace(
                &format!("{{{{{name}}}}}"),
                &format!("/assets/{hashed_name}"),
            );
            files.push(Asset {
                hashed_name,
                content_type,
                bytes: Bytes::from_static(bytes),
            });
        }
        let index_etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(index.as_bytes()));
        Assets {
            index: Bytes::from(index),
            index_etag,
            files,
        }
    }

    /// No storefront: for tests of the other routes.
    pub fn empty() -> Assets {
        Assets {
            index: Bytes::new(),
            index_etag: "\"0\"".into(),
            files: Vec::new(),
        }
    }

    pub fn file(&self, hashed_name: &str) -> Option<&Asset> {
        self.files.iter().find(|f| f.hashed_name == hashed_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_by_its_hash() {
        let assets = Assets::build();
        let page = std::str::from_utf8(&assets.index).unwrap();
        assert!(!page.contains("{{"), "a placeholder was left in the page");
        for file in &assets.files {
            assert!(page.contains(&format!("/assets/{}", file.hashed_name)));
            assert_eq!(assets.file(&file.hashed_name).unwrap().bytes, file.bytes);
        }
    }
}
