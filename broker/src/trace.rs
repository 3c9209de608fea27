//! W3C trace context (`traceparent`) carried in message headers, so that one request is one
//! trace across the gateway and every worker that touches it.

/// The header name.
pub const HEADER: &str = "traceparent";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new trace: `00-<32 hex trace id>-<16 hex span id>-01`.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4();
    let span = uuid::Uuid::new_v4();
    format!(
        "00-{}-{}-01",
        hex(trace.as_bytes()),
        hex(&span.as_bytes()[..8])
    )
}

/// The trace id of a well-formed `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
}

/// The next hop's `traceparent`: the same trace, a new span. A malformed parent starts a
/// new trace.
pub fn child(traceparent: &str) -> String {
    match trace_id(traceparent) {
        Some(trace) => {
            let span = uuid::Uuid::new_v4();
            format!("00-{trace}-{}-01", hex(&span.as_bytes()[..8]))
        }
        None => new_traceparent(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_keep_the_trace() {
        let parent = new_traceparent();
        assert_eq!(parent.len(), 55);
        let kid = child(&parent);
        assert_eq!(trace_id(&kid), trace_id(&parent));
        assert_ne!(kid, parent);
        assert!(trace_id("garbage").is_none());
        assert_eq!(trace_id(&child("garbage")).map(str::len), Some(32));
    }
}
