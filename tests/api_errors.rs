//! Every error status of the API, each triggered by a real bad input.

use crate::common::*;

/// A small image and mask, so the whole body is written before an early 401.
fn small_pair() -> (Vec<u8>, Vec<u8>) {
    (
        png_of(24, 24, |x, y| [x as u8, y as u8, 0]),
        png_of(24, 24, |x, _| [if x < 4 { 255 } else { 0 }; 3]),
    )
}

fn good_pair() -> (Vec<u8>, Vec<u8>) {
    let (wm, mask, _) = case("dev_000_astronaut_512_text_corner");
    (
        std::fs::read(wm).expect("image"),
        std::fs::read(mask).expect("mask"),
    )
}

#[tokio::test]
async fn keys_are_required_and_checked() {
    let server = Server::start(&[]);
    let (image, mask) = small_pair();
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/remove-watermark");
    let none = client
        .post(&url)
        .multipart(form(image.clone(), Some(mask.clone()), &[]))
        .send()
        .await
        .expect("send");
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let body = problem(none, 401).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("missing API key")
    );
    for wrong in ["test-key-0123456780", "short", ""] {
        let response = client
            .post(&url)
            .header("X-API-Key", wrong)
            .multipart(form(image.clone(), Some(mask.clone()), &[]))
            .send()
            .await
            .expect("send");
        let body = problem(response, 401).await;
        assert_eq!(body["detail"], "invalid API key");
    }
}

#[tokio::test]
async fn bad_inputs_get_precise_statuses() {
    let server = Server::start(&[]);
    let (image, mask) = good_pair();

    let text = remove(
        &server,
        form(
            b"this is a text file, not an image\n".to_vec(),
            Some(mask.clone()),
            &[],
        ),
    )
    .await;
    let body = problem(text, 415).await;
    assert_eq!(body["type"], "urn:unmark:problem:unsupported-format");

    let truncated = remove(
        &server,
        form(image[..image.len() / 3].to_vec(), Some(mask.clone()), &[]),
    )
    .await;
    let body = problem(truncated, 422).await;
    assert_eq!(body["type"], "urn:unmark:problem:corrupt-image");

    let bomb = remove(
        &server,
        form(
            unmark_stages::fixtures::png_claiming(100_000, 100_000),
            None,
            &[],
        ),
    )
    .await;
    let body = problem(bomb, 413).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("100000x100000"),
        "{body}"
    );

    let small_mask = png_of(100, 80, |_, _| [255; 3]);
    let mismatch = remove(&server, form(image.clone(), Some(small_mask), &[])).await;
    let body = problem(mismatch, 400).await;
    assert_eq!(body["detail"], "mask is 100x80 but image is 512x512");

    let corrupt_mask = remove(&server, form(image.clone(), Some(mask[..40].to_vec()), &[])).await;
    problem(corrupt_mask, 422).await;
}

#[tokio::test]
async fn bad_requests_are_400_or_415() {
    let server = Server::start(&[]);
    let (image, mask) = good_pair();
    for (field, value, expect) in [
        ("radius", "99", "radius must be from 1 to 32, got 99"),
        (
            "radius",
            "three",
            "radius must be a whole number, got \"three\"",
        ),
        (
            "engine",
            "lama",
            "engine must be telea or restore, got \"lama\"",
        ),
        (
            "format",
            "gif",
            "format must be png, jpeg or webp, got \"gif\"",
        ),
        ("quality", "0", "quality must be from 1 to 100, got 0"),
        (
            "mask_dilate",
            "-1",
            "mask_dilate must be a whole number, got \"-1\"",
        ),
        ("colour", "red", "unknown part \"colour\""),
    ] {
        let response = remove(
            &server,
            form(image.clone(), Some(mask.clone()), &[(field, value)]),
        )
        .await;
        let body = problem(response, 400).await;
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.starts_with(expect), "{field}={value}: {detail}");
    }
    let missing =
        reqwest::multipart::Form::new().part("mask", reqwest::multipart::Part::bytes(mask));
    let body = problem(remove(&server, missing).await, 400).await;
    assert_eq!(body["detail"], "missing the \"image\" part");

    let not_multipart = reqwest::Client::new()
        .post(server.url("/api/v1/remove-watermark"))
        .header("X-API-Key", KEY)
        .header("content-type", "image/png")
        .body(image)
        .send()
        .await
        .expect("send");
    problem(not_multipart, 415).await;

    let nowhere = reqwest::get(server.url("/api/v1/nowhere"))
        .await
        .expect("send");
    problem(nowhere, 404).await;
}

/// Sends a request the way curl does: writes what the server will take, then reads the
/// response. Returns the status and the body. (A server that refuses a body early stops
/// reading it; HTTP clients that insist on writing everything report a broken pipe.)
async fn raw_post(
    addr: &str,
    head: &str,
    chunks: impl Iterator<Item = Vec<u8>>,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in chunks {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{headers}"
    );
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn oversize_bodies_are_413_while_streaming() {
    let server = Server::start(&[
        ("UNMARK_LIMITS__MAX_INPUT_BYTES", "300000"),
        ("UNMARK_SERVER__MAX_BODY_BYTES", "700000"),
    ]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let boundary = "unmarkboundary";
    let part = |name: &str| {
        format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"; filename=\"a.png\"\r\n\r\n").into_bytes()
    };

    // Declared too large: refused from the header, before any of the body is sent.
    let head = format!(
        "POST /api/v1/remove-watermark HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: 800000\r\n\r\n"
    );
    let (status, body) = raw_post(&addr, &head, std::iter::empty()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        body["detail"],
        "request body is over the limit of 700000 bytes"
    );

    // Chunked, no length: refused once the stream passes the limit. Each 64 KiB of zeros is
    // sent as an HTTP chunk; the image part would grow to 2.5 MB.
    let head = format!(
        "POST /api/v1/remove-watermark HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n\r\n"
    );
    let chunk = |data: Vec<u8>| {
        [
            format!("{:x}\r\n", data.len()).into_bytes(),
            data,
            b"\r\n".to_vec(),
        ]
        .concat()
    };
    let chunks = std::iter::once(chunk(part("image")))
        .chain(std::iter::repeat_n(chunk(vec![0u8; 64 * 1024]), 40));
    let (status, body) = raw_post(&addr, &head, chunks).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["detail"], "image is over the limit of 300000 bytes");

    // A body under the body limit whose mask part passes the per-file limit.
    let mut form = part("mask");
    form.extend(vec![0u8; 400_000]);
    form.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let head = format!(
        "POST /api/v1/remove-watermark HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {KEY}\r\n\
         content-type: multipart/form-data; boundary={boundary}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        form.len()
    );
    let (status, body) = raw_post(&addr, &head, std::iter::once(form)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["detail"], "mask is over the limit of 300000 bytes");
}
