//! RFC 5424 STRUCTURED-DATA: checked while a header is scanned, walked later by the writers
//! that want its elements.
//!
//! `SD-ELEMENT = "[" SD-ID *(SP PARAM-NAME "=" %d34 PARAM-VALUE %d34) "]"`, names of 1 to 32
//! printable US-ASCII characters other than `=`, SP, `]` and `"`. In a value, `\"`, `\\` and
//! `\]` are escapes; any other backslash stands for itself. One deliberate leniency: an
//! unescaped `]` inside a value is accepted (RFC 5424 requires the escape, senders forget it,
//! and inside the quotes it is unambiguous), as `syslog_loose` accepts it. Values are not
//! checked to be UTF-8: that would mean scanning them on the hot path, and writers escape
//! what they write anyway.
//!
//! The walk (`sd_elements`) uses the same scanner as the check, so it sees exactly what the
//! check accepted; given unchecked bytes it stops at the first element it cannot read.

/// The longest SD-NAME (SD-ID or PARAM-NAME), RFC 5424 section 6.
const MAX_SD_NAME: usize = 32;

/// One scanned SD-ELEMENT.
struct Element<'a> {
    id: &'a [u8],
    /// The parameters: `*(SP PARAM-NAME="PARAM-VALUE")`.
    params: &'a [u8],
    /// The element's length, brackets included.
    len: usize,
}

/// One scanned SD-PARAM.
struct Param<'a> {
    name: &'a [u8],
    /// The bytes between the quotes, escapes as sent.
    value: &'a [u8],
    /// The parameter's length, from its name to its closing quote.
    len: usize,
}

/// The length of the run of SD-ELEMENTs at the start of `s`, if each is well formed and
/// there is at least one.
pub(super) fn structured_data_len(s: &[u8]) -> Option<usize> {
    let mut at = element(s)?.len;
    while s.get(at) == Some(&b'[') {
        at += element(&s[at..])?.len;
    }
    Some(at)
}

/// The SD-ELEMENT at the start of `s`.
fn element(s: &[u8]) -> Option<Element<'_>> {
    let body = s.strip_prefix(b"[")?;
    let id_len = name_len(body)?;
    let mut at = id_len;
    loop {
        match body.get(at)? {
            b']' => break,
            b' ' => at += 1 + param(&body[at + 1..])?.len,
            _ => return None,
        }
    }
    Some(Element {
        id: &body[..id_len],
        params: &body[id_len..at],
        len: at + 2,
    })
}

/// The SD-PARAM at the start of `s`.
fn param(s: &[u8]) -> Option<Param<'_>> {
    let name_len = name_len(s)?;
    let value = s.get(name_len..)?.strip_prefix(b"=\"")?;
    let mut i = 0;
    loop {
        match value.get(i)? {
            b'"' => break,
            b'\\' if matches!(value.get(i + 1), Some(b'"' | b'\\' | b']')) => i += 2,
            _ => i += 1,
        }
    }
    Some(Param {
        name: &s[..name_len],
        value: &value[..i],
        len: name_len + 2 + i + 1,
    })
}

/// The length of the SD-NAME at the start of `s`.
fn name_len(s: &[u8]) -> Option<usize> {
    let n = s
        .iter()
        .take(MAX_SD_NAME + 1)
        .take_while(|&&b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
        .count();
    (1..=MAX_SD_NAME).contains(&n).then_some(n)
}

/// The elements of a message's `sd`, in order.
pub fn sd_elements(sd: &[u8]) -> SdElements<'_> {
    SdElements { rest: sd }
}

/// The elements of a STRUCTURED-DATA field (`sd_elements`).
#[derive(Debug, Clone)]
pub struct SdElements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdElements<'a> {
    type Item = SdElement<'a>;

    fn next(&mut self) -> Option<SdElement<'a>> {
        let Some(e) = element(self.rest) else {
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[e.len..];
        Some(SdElement {
            id: e.id,
            params: SdParams { rest: e.params },
        })
    }
}

/// One SD-ELEMENT: `[id name="value" …]`.
#[derive(Debug, Clone)]
pub struct SdElement<'a> {
    /// The SD-ID, as `exampleSDID@32473` or `timeQuality`.
    pub id: &'a [u8],
    /// The parameters, in order, as `(name, value)`; each value is the bytes between the
    /// quotes with RFC 5424's escapes still in (see `unescape_sd_value`).
    pub params: SdParams<'a>,
}

/// The parameters of an SD-ELEMENT (`SdElement::params`).
#[derive(Debug, Clone)]
pub struct SdParams<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdParams<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let Some(p) = self.rest.strip_prefix(b" ").and_then(param) else {
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[1 + p.len..];
        Some((p.name, p.value))
    }
}

/// Appends a PARAM-VALUE (as `SdParams` gives it) to `out` with its escapes undone: `\"`,
/// `\\` and `\]` become `"`, `\` and `]`; any other backslash stays, as RFC 5424 says.
pub fn unescape_sd_value(value: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(&b) = value.get(i) {
        match value.get(i + 1) {
            Some(&next @ (b'"' | b'\\' | b']')) if b == b'\\' => {
                out.push(next);
                i += 2;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Elements<'a> = Vec<(&'a [u8], Vec<(&'a [u8], &'a [u8])>)>;

    fn walk(sd: &[u8]) -> Elements<'_> {
        sd_elements(sd)
            .map(|e| (e.id, e.params.collect()))
            .collect()
    }

    /// RFC 5424's own examples are accepted whole and walked element by element.
    #[test]
    fn rfc_examples() {
        let sd = br#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;
        assert_eq!(structured_data_len(sd), Some(sd.len()));
        let want: Elements = vec![
            (
                b"exampleSDID@32473",
                vec![
                    (b"iut", b"3"),
                    (b"eventSource", b"Application"),
                    (b"eventID", b"1011"),
                ],
            ),
            (b"examplePriority@32473", vec![(b"class", b"high")]),
        ];
        assert_eq!(walk(sd), want);
        let sd = b"[timeQuality][origin]";
        assert_eq!(structured_data_len(sd), Some(sd.len()));
        assert_eq!(walk(sd).len(), 2);
    }

    /// Escapes stay in the raw value and do not end it; unescaping undoes exactly the three.
    #[test]
    fn escapes() {
        let sd = br#"[id a="say \"hi\"" b="back\\" c="br\]ack]et" d="\n\x"]"#;
        assert_eq!(structured_data_len(sd), Some(sd.len()));
        let values: Vec<&[u8]> = walk(sd)[0].1.iter().map(|p| p.1).collect();
        assert_eq!(
            values,
            [&br#"say \"hi\""#[..], br"back\\", br"br\]ack]et", br"\n\x"]
        );
        let mut out = Vec::new();
        for v in values {
            unescape_sd_value(v, &mut out);
            out.push(b'|');
        }
        assert_eq!(out, br#"say "hi"|back\|br]ack]et|\n\x|"#);
        let mut out = Vec::new();
        unescape_sd_value(br"trailing\", &mut out);
        assert_eq!(out, br"trailing\");
    }

    /// What breaks the grammar is not structured data.
    #[test]
    fn malformed() {
        for bad in [
            &b"[]"[..],
            b"[id",
            b"[id ]",
            b"[id a=\"1\"",
            b"[id a=1]",
            b"[id a= \"1\"]",
            b"[id  a=\"1\"]",
            b"[id a=\"1\"b=\"2\"]",
            b"[id a=\"1\\\"]",
            b"[i=d]",
            b"[id \"a\"=\"1\"]",
            b"[abcdefghijklmnopqrstuvwxyz0123456]",
            b"x[id]",
        ] {
            assert_eq!(structured_data_len(bad), None, "{}", bad.escape_ascii());
        }
        let longest = b"[abcdefghijklmnopqrstuvwxyz012345]";
        assert_eq!(structured_data_len(longest), Some(longest.len()));
        // A run ends at the first byte that does not open an element.
        assert_eq!(structured_data_len(b"[a][b] msg"), Some(6));
        assert_eq!(structured_data_len(b"[a][b"), None);
    }

    /// The walk stops, without panicking, where unchecked bytes stop being elements.
    #[test]
    fn walk_unchecked() {
        assert_eq!(walk(b"[a x=\"1\"][b y=").len(), 1);
        assert_eq!(walk(b"[a x=\"1\" y][b]").len(), 0);
        assert_eq!(walk(b"").len(), 0);
        assert_eq!(walk(b"-").len(), 0);
    }
}
