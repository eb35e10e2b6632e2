//! The Kotlin, Swift and Python bindings committed under `client-sdk/` must
//! be what uniffi makes of today's native library. Regenerate them with
//! `SOUK_REGEN_BINDINGS=1 cargo test -p souk-ffi --test bindings`.

use std::path::{Path, PathBuf};
use std::process::Command;

use camino::Utf8PathBuf;

/// Generated file (relative to the output directory) → committed path
/// (relative to the workspace).
const FILES: [(&str, &str); 5] = [
    (
        "souk/sdk/souk.kt",
        "client-sdk/kotlin/src/main/kotlin/souk/sdk/souk.kt",
    ),
    ("souk.py", "client-sdk/python/src/souk/_bindings.py"),
    ("Souk.swift", "client-sdk/swift/Sources/Souk/Souk.swift"),
    ("SoukFFI.h", "client-sdk/swift/Headers/SoukFFI.h"),
    (
        "SoukFFI.modulemap",
        "client-sdk/swift/Headers/module.modulemap",
    ),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds `libsouk_ffi.so` from the current sources, in the target
/// directory the C ABI test uses too: `cargo test` builds the crate only as
/// an rlib, so a shared library left in `target/` could be stale.
fn shared_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let target = profile_dir.parent().unwrap().join("ffi-static");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "souk-ffi",
            "--lib",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "building the shared library failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    target
        .join("debug")
        .join(format!("libsouk_ffi.{}", std::env::consts::DLL_EXTENSION))
}

#[test]
fn committed_bindings_match_the_native_library() {
    let library = Utf8PathBuf::try_from(shared_library()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let out_dir = Utf8PathBuf::try_from(out.path().to_path_buf()).unwrap();
    uniffi::generate(uniffi::GenerateOptions {
        languages: vec![
            uniffi::TargetLanguage::Kotlin,
            uniffi::TargetLanguage::Swift,
            uniffi::TargetLanguage::Python,
        ],
        source: library,
        out_dir: out_dir.clone(),
        // uniffi finds ffi/uniffi.toml through `cargo metadata`.
        config_override: None,
        format: false,
        crate_filter: None,
        metadata_no_deps: true,
    })
    .expect("uniffi generates the bindings");

    let regenerate = std::env::var_os("SOUK_REGEN_BINDINGS").is_some();
    let mut stale = Vec::new();
    for (generated, committed) in FILES {
        let fresh = std::fs::read(out_dir.join(generated)).unwrap_or_else(|e| {
            panic!(
                "uniffi wrote no {generated} ({e}); it wrote {:?}",
                listing(out.path())
            )
        });
        let path = workspace().join(committed);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &fresh).unwrap();
        }
        if std::fs::read(&path).unwrap_or_default() != fresh {
            stale.push(committed);
        }
    }
    assert!(
        stale.is_empty(),
        "stale bindings {stale:?}: run SOUK_REGEN_BINDINGS=1 cargo test -p souk-ffi --test bindings"
    );
}

fn listing(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else if let Ok(relative) = entry.path().strip_prefix(dir) {
                files.push(relative.display().to_string());
            }
        }
    }
    files
}
