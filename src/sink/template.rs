//! Output path templates: `output = "/var/log/remote/{peer_ip}/{date}.log"`, one file per
//! sender. Parsed once, at config time: an unknown field or an unbalanced brace is an error
//! naming it; `{{` and `}}` are literal braces.
//!
//! The path splits into the fixed prefix (the leading directories without fields, opened once
//! at start) and the components below it, each a run of literal text and fields. Field values
//! come from the network (a peer address, and with `parse = "syslog"` names the sender chose),
//! so each is reduced to `[A-Za-z0-9._-]` (anything else becomes `_`), and a component that
//! comes out empty, `.` or `..` becomes `_`: a value can never climb out of the prefix or name
//! a directory of its own choosing. A component is cut at NAME_MAX bytes.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The longest file name (Linux NAME_MAX): longer components are cut.
pub const NAME_MAX: usize = 255;

/// A field of an output template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    PeerIp,
    PeerPort,
    Listener,
    Hostname,
    App,
    Facility,
    Severity,
    Date,
    Hour,
}

const FIELDS: [(&str, Field); 9] = [
    ("peer_ip", Field::PeerIp),
    ("peer_port", Field::PeerPort),
    ("listener", Field::Listener),
    ("hostname", Field::Hostname),
    ("app", Field::App),
    ("facility", Field::Facility),
    ("severity", Field::Severity),
    ("date", Field::Date),
    ("hour", Field::Hour),
];

impl Field {
    /// True for the fields taken from the message itself (they need `parse = "syslog"`).
    pub fn from_message(self) -> bool {
        matches!(
            self,
            Field::Hostname | Field::App | Field::Facility | Field::Severity
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Vec<u8>),
    Field(Field),
}

/// What `output` says once its fields are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No fields: one file, this path (`{{` and `}}` already made single braces).
    Plain(String),
    Template(Template),
}

/// A parsed output template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As written, for messages and `--check-config`.
    text: String,
    /// The leading directories without fields.
    prefix: PathBuf,
    /// The path below the prefix, component by component (the last is the file name).
    components: Vec<Vec<Part>>,
}

/// The values of one record's fields, as received (reduced when the path is built).
#[derive(Debug, Default, Clone, Copy)]
pub struct Values<'a> {
    pub peer_ip: &'a [u8],
    pub peer_port: &'a [u8],
    pub listener: &'a [u8],
    /// `YYYY-MM-DD` and `HH` of the receipt time, in the configured zone.
    pub date: &'a [u8],
    pub hour: &'a [u8],
    pub hostname: Option<&'a [u8]>,
    pub app: Option<&'a [u8]>,
    pub facility: Option<&'a [u8]>,
    pub severity: Option<&'a [u8]>,
}

/// Reads `text` as an output path: a template if it has fields.
pub fn parse(text: &str) -> Result<Parsed> {
    // (literal text so far, parts of the current component, finished components)
    let bytes = text.as_bytes();
    let mut components: Vec<Vec<Part>> = Vec::new();
    let mut current: Vec<Part> = Vec::new();
    let mut literal = Vec::new();
    let mut plain = String::new();
    let mut any_field = false;
    let mut i = 0;
    let flush_text = |current: &mut Vec<Part>, literal: &mut Vec<u8>| {
        if !literal.is_empty() {
            current.push(Part::Text(std::mem::take(literal)));
        }
    };
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                literal.push(b'{');
                plain.push('{');
                i += 2;
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => {
                literal.push(b'}');
                plain.push('}');
                i += 2;
            }
            b'{' => {
                let Some(len) = bytes[i + 1..].iter().position(|&b| b == b'}') else {
                    bail!("unbalanced `{{` at byte {i} (write `{{{{` for a literal brace)");
                };
                let name = &text[i + 1..i + 1 + len];
                let Some(&(_, field)) = FIELDS.iter().find(|(n, _)| *n == name) else {
                    let known: Vec<String> =
                        FIELDS.iter().map(|(n, _)| format!("{{{n}}}")).collect();
                    bail!(
                        "unknown field `{{{name}}}` (known fields: {})",
                        known.join(", ")
                    );
                };
                flush_text(&mut current, &mut literal);
                current.push(Part::Field(field));
                any_field = true;
                i += len + 2;
            }
            b'}' => bail!("unbalanced `}}` at byte {i} (write `}}}}` for a literal brace)"),
            b'/' => {
                flush_text(&mut current, &mut literal);
                components.push(std::mem::take(&mut current));
                plain.push('/');
                i += 1;
            }
            _ => {
                let c = text[i..].chars().next().expect("inside the text");
                literal.extend_from_slice(&bytes[i..i + c.len_utf8()]);
                plain.push(c);
                i += c.len_utf8();
            }
        }
    }
    flush_text(&mut current, &mut literal);
    components.push(current);
    if !any_field {
        return Ok(Parsed::Plain(plain));
    }
    let absolute = text.starts_with('/');
    let first_field = components
        .iter()
        .position(|c| c.iter().any(|p| matches!(p, Part::Field(_))))
        .expect("a field somewhere");
    let mut prefix = PathBuf::from(if absolute { "/" } else { "." });
    for component in &components[..first_field] {
        if let [Part::Text(t)] = component.as_slice() {
            prefix.push(String::from_utf8_lossy(t).as_ref());
        }
    }
    let mut below = Vec::new();
    for component in components.into_iter().skip(first_field) {
        match component.as_slice() {
            [] => {}
            [Part::Text(t)] if t == b"." || t == b".." => {
                bail!(
                    "`{}` after the first field: the path must stay below `{}`",
                    String::from_utf8_lossy(t),
                    prefix.display()
                );
            }
            _ => below.push(component),
        }
    }
    if text.ends_with('/') {
        bail!("names a directory, not a file");
    }
    Ok(Parsed::Template(Template {
        text: text.to_string(),
        prefix,
        components: below,
    }))
}

impl Template {
    /// The fixed directory every resolved path stays under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// True if some field comes from the message (hostname, app, facility, severity): each
    /// record is then parsed and placed on its own.
    pub fn uses_message(&self) -> bool {
        self.fields().any(Field::from_message)
    }

    /// True if some field is the date or hour.
    pub fn uses_time(&self) -> bool {
        self.fields()
            .any(|f| matches!(f, Field::Date | Field::Hour))
    }

    fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.components.iter().flatten().filter_map(|p| match p {
            Part::Field(f) => Some(*f),
            Part::Text(_) => None,
        })
    }

    /// Makes a relative prefix absolute (the daemon moves to `/`).
    pub fn absolutize(&mut self, base: &Path) {
        if self.prefix.is_relative() {
            self.prefix = base.join(&self.prefix);
            if !self.text.starts_with('/') {
                self.text = format!("{}/{}", base.display(), self.text);
            }
        }
    }

    /// Writes the path below the prefix for `values` into `out` (cleared first): components
    /// joined by `/`, each reduced and cut as the module says.
    pub fn render(&self, values: &Values<'_>, out: &mut Vec<u8>) {
        out.clear();
        for (n, component) in self.components.iter().enumerate() {
            if n > 0 {
                out.push(b'/');
            }
            let start = out.len();
            for part in component {
                match part {
                    Part::Text(t) => out.extend_from_slice(t),
                    Part::Field(f) => {
                        let value = match f {
                            Field::PeerIp => Some(values.peer_ip),
                            Field::PeerPort => Some(values.peer_port),
                            Field::Listener => Some(values.listener),
                            Field::Date => Some(values.date),
                            Field::Hour => Some(values.hour),
                            Field::Hostname => values.hostname,
                            Field::App => values.app,
                            Field::Facility => values.facility,
                            Field::Severity => values.severity,
                        };
                        // Absent (a message without it) or empty (a unix peer's port): `-`.
                        let value = value.filter(|v| !v.is_empty()).unwrap_or(b"-");
                        reduce_into(value, out);
                    }
                }
            }
            out.truncate(start + (out.len() - start).min(NAME_MAX));
            let name = &out[start..];
            if name.is_empty() || name == b"." || name == b".." {
                out.truncate(start);
                out.push(b'_');
            }
        }
    }
}

/// Appends `value` with every byte outside `[A-Za-z0-9._-]` made `_` (at most NAME_MAX).
fn reduce_into(value: &[u8], out: &mut Vec<u8>) {
    let value = &value[..value.len().min(NAME_MAX)];
    let value = match value {
        b"." | b".." => b"_",
        v => v,
    };
    out.extend(value.iter().map(|&b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            b
        } else {
            b'_'
        }
    }));
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Template {
        match parse(text).unwrap() {
            Parsed::Template(t) => t,
            Parsed::Plain(p) => panic!("{text} parsed as the plain path {p}"),
        }
    }

    fn render(t: &Template, values: &Values<'_>) -> String {
        let mut out = Vec::new();
        t.render(values, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The prefix is the leading directories without fields; the rest is rendered below it.
    #[test]
    fn prefix_and_render() {
        let t = template("/var/log/remote/{peer_ip}/{date}-{hour}.log");
        assert_eq!(t.prefix(), Path::new("/var/log/remote"));
        let v = Values {
            peer_ip: b"192.0.2.7",
            date: b"2026-12-01",
            hour: b"18",
            ..Values::default()
        };
        assert_eq!(render(&t, &v), "192.0.2.7/2026-12-01-18.log");
        assert!(t.uses_time() && !t.uses_message());
        let t = template("/srv/x{peer_port}.log");
        assert_eq!(t.prefix(), Path::new("/srv"));
        assert_eq!(
            render(
                &t,
                &Values {
                    peer_port: b"514",
                    ..v
                }
            ),
            "x514.log"
        );
        let mut t = template("logs/{listener}/a.log");
        t.absolutize(Path::new("/base"));
        assert_eq!(t.prefix(), Path::new("/base/./logs"));
    }

    /// Paths without fields are plain paths, `{{` `}}` made single braces.
    #[test]
    fn plain_paths() {
        assert_eq!(
            parse("/var/log/x.log").unwrap(),
            Parsed::Plain("/var/log/x.log".into())
        );
        assert_eq!(
            parse("/tmp/{{a}}.log").unwrap(),
            Parsed::Plain("/tmp/{a}.log".into())
        );
        let t = template("/tmp/{{{peer_ip}}}.log");
        assert_eq!(
            render(
                &t,
                &Values {
                    peer_ip: b"1.2.3.4",
                    ..Values::default()
                }
            ),
            "{1.2.3.4}.log"
        );
    }

    /// Unknown fields, unbalanced braces and `..` below the first field are errors naming them.
    #[test]
    fn errors_name_the_culprit() {
        let e = parse("/x/{peer}.log").unwrap_err().to_string();
        assert!(e.contains("unknown field `{peer}`"), "{e}");
        let e = parse("/x/{peer_ip.log").unwrap_err().to_string();
        assert!(e.contains("unbalanced `{` at byte 3"), "{e}");
        let e = parse("/x/peer}.log").unwrap_err().to_string();
        assert!(e.contains("unbalanced `}` at byte 7"), "{e}");
        let e = parse("/x/{peer_ip}/../y.log").unwrap_err().to_string();
        assert!(e.contains("`..` after the first field"), "{e}");
        assert!(parse("/x/{peer_ip}/").is_err());
    }

    /// Sender-chosen values cannot leave the prefix or name anything but one component.
    #[test]
    fn forged_values_are_reduced() {
        let t = template("/r/{hostname}/{app}.log");
        let long = vec![b'a'; 10 * 1024];
        for (host, app, expected) in [
            (
                &b"../../etc"[..],
                &b"passwd"[..],
                ".._.._etc/passwd.log".to_string(),
            ),
            (b".", b"x", "_/x.log".into()),
            (b"..", b"..", "_/_.log".into()),
            (b"a/b", b"c\0d", "a_b/c_d.log".into()),
            (b"", b"x", "-/x.log".into()),
            ("héllo".as_bytes(), b"x", "h__llo/x.log".into()),
            (&long, b"x", format!("{}/x.log", "a".repeat(NAME_MAX))),
        ] {
            let v = Values {
                hostname: Some(host),
                app: Some(app),
                ..Values::default()
            };
            assert_eq!(render(&t, &v), expected);
        }
        // Absent message fields are `-`; a component that ends up `.` or `..` is `_`.
        assert_eq!(render(&t, &Values::default()), "-/-.log");
        let t = template("/r/{app}{app}/{app}.");
        let v = Values {
            app: Some(b"."),
            ..Values::default()
        };
        assert_eq!(render(&t, &v), "__/_.");
        // Cut at NAME_MAX even when literal text follows a long value.
        let t = template("/r/{hostname}.log");
        let v = Values {
            hostname: Some(&long),
            ..Values::default()
        };
        assert_eq!(render(&t, &v).len(), NAME_MAX);
    }
}
