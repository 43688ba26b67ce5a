//! The little HTTP that serving `/metrics` takes: a request head read with `httparse` from a
//! fixed buffer, and the one response each exchange gets, after which the connection closes.
//!
//! GET /metrics (any query string) is answered with the exposition text; another path 404,
//! another method 405 with `Allow: GET`, what is not HTTP/1.x 400, and a head that does not
//! fit the buffer (or has too many header lines) 431. A request body is never read.

/// Header lines a request may have; Prometheus sends six.
const MAX_HEADERS: usize = 32;

/// The content type of exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with the metrics.
    Metrics,
    /// An error status with a short text.
    Error(Status),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    TooLarge,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::BadRequest => "400 Bad Request",
            Status::NotFound => "404 Not Found",
            Status::MethodNotAllowed => "405 Method Not Allowed",
            Status::TooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// The answer to the request head in `request` (the bytes read so far), or `None` while it is
/// incomplete and `full` (the buffer is) is false.
pub fn answer(request: &[u8], full: bool) -> Option<Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if full => return Some(Answer::Error(Status::TooLarge)),
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => return Some(Answer::Error(Status::TooLarge)),
        Err(_) => return Some(Answer::Error(Status::BadRequest)),
    }
    let path = parsed.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    Some(match (parsed.method, path) {
        (Some("GET"), "/metrics") => Answer::Metrics,
        (Some("GET"), _) => Answer::Error(Status::NotFound),
        _ => Answer::Error(Status::MethodNotAllowed),
    })
}

/// The whole response: head and `body`.
pub fn response(answer: Answer, body: &[u8]) -> Vec<u8> {
    let (status, content_type, extra) = match answer {
        Answer::Metrics => ("200 OK", CONTENT_TYPE, ""),
        Answer::Error(Status::MethodNotAllowed) => (
            Status::MethodNotAllowed.line(),
            "text/plain; charset=utf-8",
            "Allow: GET\r\n",
        ),
        Answer::Error(status) => (status.line(), "text/plain; charset=utf-8", ""),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The body of an error response.
pub fn error_body(status: Status) -> Vec<u8> {
    let text = match status {
        Status::BadRequest => "not an HTTP/1.x request",
        Status::NotFound => "not found; the metrics are at /metrics",
        Status::MethodNotAllowed => "only GET is served",
        Status::TooLarge => "request head too large",
    };
    format!("{text}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Prometheus sends gets the metrics; other paths, methods and garbage their errors;
    /// an incomplete head waits unless the buffer is full.
    #[test]
    fn answers() {
        let prometheus = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9140\r\n\
            User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4;q=0.2,*/*;q=0.1\r\n\
            Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        assert_eq!(answer(prometheus, false), Some(Answer::Metrics));
        assert_eq!(
            answer(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n", false),
            Some(Answer::Metrics)
        );
        assert_eq!(
            answer(b"GET / HTTP/1.1\r\n\r\n", false),
            Some(Answer::Error(Status::NotFound))
        );
        assert_eq!(
            answer(b"POST /metrics HTTP/1.1\r\n\r\n", false),
            Some(Answer::Error(Status::MethodNotAllowed))
        );
        assert_eq!(
            answer(b"\x16\x03\x01\x02\x00\x01\x00", false),
            Some(Answer::Error(Status::BadRequest)),
            "a TLS client hello"
        );
        assert_eq!(
            answer(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
            Some(Answer::Error(Status::BadRequest))
        );
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost:", false), None);
        assert_eq!(
            answer(b"GET /metrics HTTP/1.1\r\nHost:", true),
            Some(Answer::Error(Status::TooLarge))
        );
        let many = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(
            answer(many.as_bytes(), false),
            Some(Answer::Error(Status::TooLarge))
        );
    }

    /// Responses say their length and that the connection closes; 405 names the method.
    #[test]
    fn responses() {
        let ok = String::from_utf8(response(Answer::Metrics, b"a 1\n")).unwrap();
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 4\r\nConnection: close\r\n\r\na 1\n"
        );
        let status = Status::MethodNotAllowed;
        let bad = response(Answer::Error(status), &error_body(status));
        let bad = String::from_utf8(bad).unwrap();
        assert!(
            bad.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{bad}"
        );
        assert!(bad.contains("\r\nAllow: GET\r\n"), "{bad}");
    }
}
