//! The PROXY protocol header a load balancer (HAProxy's `send-proxy`, `send-proxy-v2`) sends
//! before the client's bytes, read as it arrives, in pieces of any size: HAProxy's
//! proxy-protocol.txt, versions 1 (one text line) and 2 (binary).
//!
//! A `HeaderReader` takes each read's bytes and says whether the header is complete, and how
//! many of those bytes it took (the rest are the client's first log data), or that it can never
//! be valid. It holds at most `V1_MAX` bytes whatever it is sent: a version 2 header's address
//! block is kept only as far as its IPv4 or IPv6 addresses go (36 bytes), and the rest of its
//! announced length (TLVs, unix addresses: up to 65,535 bytes) is skipped as it streams by,
//! never stored. So a balancer (or a client posing as one) that announces 65,535 bytes and
//! stalls holds 107 bytes until the header deadline closes it.
//!
//! Why not the `ppp` crate: it parses a header held whole in one buffer, TLVs included, so a
//! connection would hold up to 64 KiB while its header streams in; it serves as the oracle
//! this parser's tests compare with.
//!
//! The source address is the original client's for a v1 `TCP4`/`TCP6` line and a v2 `PROXY`
//! command over IPv4 or IPv6. Where the header names no client (v1 `UNKNOWN`, v2 `LOCAL`,
//! which balancers send for their health checks, and v2 `PROXY` with an unspecified or unix
//! family) the spec says to use the connection's real endpoints: the balancer's own address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6 addresses
/// and ports); the spec's receiver gives up past it.
pub const V1_MAX: usize = 107;
/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 2 header's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The original client's address and port.
    Client(SocketAddr),
    /// No client named (v1 `UNKNOWN`, v2 `LOCAL` or a family without IP addresses): the
    /// connection is the balancer's own.
    Balancer,
}

/// Where reading a header stands after a piece of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Valid so far: more bytes are needed.
    More,
    /// Complete: `used` bytes of the last piece were the header's end; the rest of that
    /// piece is the client's first data.
    Done { source: Source, used: usize },
    /// Can never become a valid header; why.
    Invalid(&'static str),
}

/// The version being read, and its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Nothing received yet.
    Unknown,
    /// A text line: kept until its LF.
    V1,
    /// The binary form: the fixed part and addresses are kept, then `skip` bytes skipped.
    V2 { skip: usize },
}

/// A header being read: a few bytes, never more than `V1_MAX`.
#[derive(Debug, Clone)]
pub struct HeaderReader {
    version: Version,
    kept: [u8; V1_MAX],
    len: usize,
}

impl Default for HeaderReader {
    fn default() -> HeaderReader {
        HeaderReader {
            version: Version::Unknown,
            kept: [0; V1_MAX],
            len: 0,
        }
    }
}

impl HeaderReader {
    /// Takes the next bytes of the connection. After `Done` or `Invalid` the reader is not
    /// to be used again.
    pub fn push(&mut self, data: &[u8]) -> Progress {
        if data.is_empty() {
            return Progress::More;
        }
        if self.version == Version::Unknown {
            self.version = match data[0] {
                b'P' => Version::V1,
                b'\r' => Version::V2 { skip: 0 },
                _ => return Progress::Invalid("does not start with a PROXY protocol header"),
            };
        }
        match self.version {
            Version::V1 => self.push_v1(data),
            _ => self.push_v2(data),
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.kept[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_v1(&mut self, data: &[u8]) -> Progress {
        let room = V1_MAX - self.len;
        let window = &data[..data.len().min(room)];
        let take = memchr::memchr(b'\n', window).map_or(window.len(), |i| i + 1);
        self.keep(&window[..take]);
        let line = &self.kept[..self.len];
        // Fail as soon as the bytes show it is no header, not at the deadline.
        let prefix = line.len().min(6);
        if line[..prefix] != b"PROXY "[..prefix] {
            return Progress::Invalid("does not start with a PROXY protocol header");
        }
        if line.ends_with(b"\n") {
            return match parse_v1(line) {
                Ok(source) => Progress::Done { source, used: take },
                Err(why) => Progress::Invalid(why),
            };
        }
        if self.len == V1_MAX {
            return Progress::Invalid("a version 1 header without CRLF in its first 107 bytes");
        }
        Progress::More
    }

    fn push_v2(&mut self, data: &[u8]) -> Progress {
        let mut used = 0;
        // The fixed part, checked byte by byte as it comes.
        while self.len < V2_FIXED && used < data.len() {
            let byte = data[used];
            used += 1;
            let at = self.len;
            self.keep(&[byte]);
            let bad = match at {
                0..12 => (byte != V2_SIGNATURE[at]).then_some("not a PROXY protocol header"),
                12 if byte >> 4 != 2 => Some("version 2 signature with another version"),
                12 if byte & 0xf > 1 => Some("version 2 with a command other than LOCAL or PROXY"),
                13 if byte >> 4 > 3 => Some("version 2 with an unknown address family"),
                13 if byte & 0xf > 2 => Some("version 2 with an unknown transport protocol"),
                _ => None,
            };
            if let Some(why) = bad {
                return Progress::Invalid(why);
            }
            if self.len == V2_FIXED {
                let length = usize::from(u16::from_be_bytes([self.kept[14], self.kept[15]]));
                let need = self.v2_addresses_kept();
                if length < need {
                    return Progress::Invalid(
                        "version 2 length shorter than its address family's addresses",
                    );
                }
                self.version = Version::V2 {
                    skip: length - need,
                };
            }
        }
        if self.len < V2_FIXED {
            return Progress::More;
        }
        // The addresses worth keeping.
        let end = V2_FIXED + self.v2_addresses_kept();
        let take = (end - self.len).min(data.len() - used);
        self.keep(&data[used..used + take]);
        used += take;
        if self.len < end {
            return Progress::More;
        }
        // The rest of the announced length, skipped.
        let Version::V2 { skip } = &mut self.version else {
            unreachable!("reading version 2")
        };
        let skipped = (*skip).min(data.len() - used);
        *skip -= skipped;
        used += skipped;
        if *skip > 0 {
            return Progress::More;
        }
        Progress::Done {
            source: self.v2_source(),
            used,
        }
    }

    /// How many address bytes after the fixed part are kept: those of a `PROXY` command over
    /// IPv4 or IPv6 (TCP or UDP); none otherwise (their addresses are not used).
    fn v2_addresses_kept(&self) -> usize {
        match (self.kept[12] & 0xf, self.kept[13]) {
            (1, 0x11 | 0x12) => 12,
            (1, 0x21 | 0x22) => 36,
            _ => 0,
        }
    }

    fn v2_source(&self) -> Source {
        let a = &self.kept[V2_FIXED..self.len];
        let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
        match a.len() {
            12 => {
                let ip = Ipv4Addr::from(<[u8; 4]>::try_from(&a[..4]).expect("4 bytes"));
                Source::Client(SocketAddr::new(IpAddr::V4(ip), port(8)))
            }
            36 => {
                let ip = Ipv6Addr::from(<[u8; 16]>::try_from(&a[..16]).expect("16 bytes"));
                Source::Client(SocketAddr::new(IpAddr::V6(ip), port(32)))
            }
            _ => Source::Balancer,
        }
    }
}

/// A complete version 1 line, LF included: `PROXY TCP4 SRC DST SPORT DPORT\r\n`, each field
/// separated by exactly one space, addresses of the announced family, ports decimal without
/// heading zeroes; or `PROXY UNKNOWN` and anything up to the CRLF.
fn parse_v1(line: &[u8]) -> Result<Source, &'static str> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or("a version 1 header ending in a bare LF, not CRLF")?;
    let text = std::str::from_utf8(line).map_err(|_| "a version 1 header that is not ASCII")?;
    if !text.is_ascii() {
        return Err("a version 1 header that is not ASCII");
    }
    let mut fields = text.split(' ');
    fields.next(); // "PROXY", checked as it came
    let family = fields
        .next()
        .ok_or("a version 1 header without a protocol")?;
    if family == "UNKNOWN" {
        return Ok(Source::Balancer);
    }
    let fields: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err("a version 1 header without exactly two addresses and two ports");
    };
    // The destination is checked, not used: the listener's own address.
    let (src, _dst): (IpAddr, IpAddr) = match family {
        "TCP4" => (
            src.parse::<Ipv4Addr>().map_err(|_| BAD_ADDRESS)?.into(),
            dst.parse::<Ipv4Addr>().map_err(|_| BAD_ADDRESS)?.into(),
        ),
        "TCP6" => (
            src.parse::<Ipv6Addr>().map_err(|_| BAD_ADDRESS)?.into(),
            dst.parse::<Ipv6Addr>().map_err(|_| BAD_ADDRESS)?.into(),
        ),
        _ => return Err("a version 1 header with a protocol other than TCP4, TCP6 or UNKNOWN"),
    };
    let sport = port(sport)?;
    port(dport)?;
    Ok(Source::Client(SocketAddr::new(src, sport)))
}

const BAD_ADDRESS: &str = "a version 1 header with an address not of its protocol's family";

/// A version 1 port: 0 to 65535 in decimal, no sign, no heading zero.
fn port(text: &str) -> Result<u16, &'static str> {
    const BAD: &str = "a version 1 header with a port that is not a number from 0 to 65535";
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if !digits || text.is_empty() || text.len() > 5 || (text.len() > 1 && text.starts_with('0')) {
        return Err(BAD);
    }
    text.parse().map_err(|_| BAD)
}

/// Test helpers shared with the fuzz target: a header read in the given pieces.
#[cfg(any(test, fuzzing))]
pub mod testing {
    use super::*;

    /// Reads `pieces` one after another until the header is complete or invalid: its
    /// progress and the offset in the whole stream where the client's data starts.
    pub fn read_in_pieces(pieces: &[&[u8]]) -> (Progress, usize) {
        let mut reader = HeaderReader::default();
        let mut offset = 0;
        for piece in pieces {
            match reader.push(piece) {
                Progress::More => offset += piece.len(),
                Progress::Done { source, used } => {
                    assert!(used <= piece.len(), "took more than it was given");
                    return (Progress::Done { source, used }, offset + used);
                }
                invalid => return (invalid, offset),
            }
        }
        (Progress::More, offset)
    }

    /// `data` cut at `cuts` (offsets, in any order, out of range ones ignored).
    pub fn split(data: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
        cuts.retain(|&c| c <= data.len());
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            pieces.push(&data[start..cut]);
            start = cut;
        }
        pieces.push(&data[start..]);
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{read_in_pieces, split};
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// The header and where the data starts, read whole and one byte at a time (which must
    /// agree).
    fn read(data: &[u8]) -> (Progress, usize) {
        let whole = read_in_pieces(&[data]);
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        let (progress, at) = read_in_pieces(&bytes);
        let normalize = |p: Progress| match p {
            Progress::Done { source, .. } => Progress::Done { source, used: 0 },
            other => other,
        };
        assert_eq!(normalize(whole.0), normalize(progress), "{data:?}");
        if matches!(progress, Progress::Done { .. }) {
            assert_eq!(whole.1, at, "where the data starts");
        }
        whole
    }

    fn client(data: &[u8]) -> (SocketAddr, usize) {
        match read(data) {
            (
                Progress::Done {
                    source: Source::Client(a),
                    ..
                },
                at,
            ) => (a, at),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(data)),
        }
    }

    fn invalid(data: &[u8]) -> &'static str {
        match read(data).0 {
            Progress::Invalid(why) => why,
            other => panic!("{:?} read as {other:?}", String::from_utf8_lossy(data)),
        }
    }

    /// A version 2 header: `cmd` (0 LOCAL, 1 PROXY), family byte, addresses, then `extra`
    /// bytes of TLVs.
    fn v2(cmd: u8, family: u8, addresses: &[u8], extra: usize) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend(((addresses.len() + extra) as u16).to_be_bytes());
        h.extend(addresses);
        h.extend(std::iter::repeat_n(0xee, extra));
        h
    }

    /// v1 lines of both families, the data after them, and UNKNOWN.
    #[test]
    fn version_1() {
        let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 5140\r\nhello\n";
        assert_eq!(client(h), (addr("192.0.2.7:51234"), 42));
        let h = b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n";
        assert_eq!(client(h), (addr("[2001:db8::7]:65535"), h.len()));
        let h = b"PROXY TCP4 255.255.255.255 255.255.255.255 0 65535\r\n";
        assert_eq!(client(h).0, addr("255.255.255.255:0"));
        for unknown in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff::1 whatever\r\nx",
        ] {
            let (progress, _) = read(unknown);
            assert!(
                matches!(
                    progress,
                    Progress::Done {
                        source: Source::Balancer,
                        ..
                    }
                ),
                "{progress:?}"
            );
        }
        let longest = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            ["ffff"; 8].join(":")
        );
        assert_eq!(longest.len(), V1_MAX);
        assert!(matches!(read(longest.as_bytes()).0, Progress::Done { .. }));
    }

    /// Everything the spec says to reject, at the first byte that shows it where it can.
    #[test]
    fn version_1_rejects() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 5140\r\n"[..],
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 5140\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 18446744073709551617\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 051234 5140\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +5 5140\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 -5 5140\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1  5140\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1\r\n",
            b"PROXY TCP4 192.0.2.256 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.07 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n",
            b"PROXY TCP6 2001:db8::g ::1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY  TCP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\r\n",
            b"PROXY TCP4 192.0.2.\xff 10.0.0.1 1 2\r\n",
            b"PROXY\r\n",
        ] {
            invalid(bad);
        }
        assert_eq!(
            invalid(b"<13>hello\n"),
            "does not start with a PROXY protocol header"
        );
        assert_eq!(
            invalid(b"PROXX"),
            "does not start with a PROXY protocol header"
        );
        assert_eq!(
            read(b"PROXY TCP4 192.0.2.7").0,
            Progress::More,
            "half a header"
        );
        let endless = vec![b'1'; 200];
        let mut line = b"PROXY ".to_vec();
        line.extend(&endless);
        assert!(invalid(&line).contains("107 bytes"), "no CRLF in time");
    }

    /// v2 PROXY over TCP and UDP, both families; TLVs skipped; the data after them; LOCAL
    /// and families without IP addresses are the balancer's.
    #[test]
    fn version_2() {
        let mut v4 = vec![192, 0, 2, 7, 10, 0, 0, 1];
        v4.extend(51234u16.to_be_bytes());
        v4.extend(5140u16.to_be_bytes());
        let mut h = v2(1, 0x11, &v4, 0);
        let len = h.len();
        h.extend(b"hello\n");
        assert_eq!(client(&h), (addr("192.0.2.7:51234"), len));
        let h = v2(1, 0x12, &v4, 300);
        assert_eq!(
            client(&h),
            (addr("192.0.2.7:51234"), h.len()),
            "TLVs skipped"
        );
        let mut v6 = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets().to_vec();
        v6.extend(Ipv6Addr::LOCALHOST.octets());
        v6.extend(443u16.to_be_bytes());
        v6.extend(5140u16.to_be_bytes());
        let h = v2(1, 0x21, &v6, 65535 - 36);
        assert_eq!(
            client(&h),
            (addr("[2001:db8::7]:443"), h.len()),
            "the longest"
        );
        for (cmd, family, addresses, extra) in [
            (0, 0x00, &[][..], 0),
            (0, 0x11, &v4[..], 7),
            (0, 0x11, &[][..], 0),
            (1, 0x00, &[][..], 9),
            (1, 0x31, &[0; 216][..], 0),
            (1, 0x32, &[0; 216][..], 4),
        ] {
            let h = v2(cmd, family, addresses, extra);
            assert_eq!(
                read(&h),
                (
                    Progress::Done {
                        source: Source::Balancer,
                        used: h.len()
                    },
                    h.len()
                )
            );
        }
    }

    /// Bad versions, commands, families, lengths; a long announced length is skipped without
    /// being kept.
    #[test]
    fn version_2_rejects() {
        let good = v2(1, 0x11, &[0; 12], 0);
        let with = |at: usize, byte: u8| {
            let mut h = good.clone();
            h[at] = byte;
            h
        };
        assert!(invalid(&with(12, 0x11)).contains("another version"));
        assert!(invalid(&with(12, 0x22)).contains("command"));
        assert!(invalid(&with(13, 0x41)).contains("family"));
        assert!(invalid(&with(13, 0x13)).contains("transport"));
        assert!(invalid(&with(15, 11)).contains("shorter"));
        assert!(invalid(&with(4, 1)).contains("not a PROXY"));
        assert_eq!(
            invalid(&with(0, b'X')),
            "does not start with a PROXY protocol header"
        );
        // 65,535 bytes announced, 100 sent: still waiting, holding its 16 + 12 bytes only.
        let stalled = v2(1, 0x11, &[0; 12], 65535 - 12);
        let mut reader = HeaderReader::default();
        assert_eq!(reader.push(&stalled[..100]), Progress::More);
        assert_eq!(reader.len, 28);
        assert_eq!(
            reader.version,
            Version::V2 {
                skip: 65535 - 12 - 72
            }
        );
    }

    /// However the stream is cut, the header and where the data starts are the same.
    #[test]
    fn pieces_do_not_matter() {
        let mut v4 = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], 20);
        v4.extend(b"data");
        let v1 = b"PROXY TCP6 2001:db8::7 ::1 1 2\r\ndata".to_vec();
        for data in [v4, v1] {
            let whole = read_in_pieces(&[&data]);
            for a in 0..data.len() {
                for b in a..data.len() {
                    assert_eq!(read_in_pieces(&split(&data, vec![a, b])).1, whole.1);
                }
            }
            assert_eq!(&data[whole.1..], b"data");
        }
    }

    /// The `ppp` crate, on complete headers, reads the same client address (where it reads
    /// one) as this parser, and rejects what this parser rejects among these.
    #[test]
    fn agrees_with_ppp() {
        use ppp::{HeaderResult, v1, v2};
        let mut v4 = vec![192, 0, 2, 7, 10, 0, 0, 1];
        v4.extend(51234u16.to_be_bytes());
        v4.extend(5140u16.to_be_bytes());
        let headers: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 192.0.2.7 10.0.0.1 51234 5140\r\n".to_vec(),
            b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 051234 5140\r\n".to_vec(),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 5140\r\n".to_vec(),
            b"PROXY TCP6 192.0.2.7 ::1 1 2\r\n".to_vec(),
            v2(1, 0x11, &v4, 0),
            v2(1, 0x11, &v4, 0).into_iter().take(20).collect(),
            v2(0, 0x00, &[], 0),
        ];
        for h in headers {
            let ours = read_in_pieces(&[&h]).0;
            let theirs = match HeaderResult::parse(&h) {
                HeaderResult::V1(Ok(v1::Header { addresses, .. })) => match addresses {
                    v1::Addresses::Tcp4(a) => Some(Some(SocketAddr::new(
                        a.source_address.into(),
                        a.source_port,
                    ))),
                    v1::Addresses::Tcp6(a) => Some(Some(SocketAddr::new(
                        a.source_address.into(),
                        a.source_port,
                    ))),
                    v1::Addresses::Unknown => Some(None),
                },
                HeaderResult::V2(Ok(header)) => match (header.command, header.addresses) {
                    (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some(Some(SocketAddr::new(
                        a.source_address.into(),
                        a.source_port,
                    ))),
                    _ => Some(None),
                },
                _ => None,
            };
            let ours = match ours {
                Progress::Done {
                    source: Source::Client(a),
                    ..
                } => Some(Some(a)),
                Progress::Done {
                    source: Source::Balancer,
                    ..
                } => Some(None),
                _ => None,
            };
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&h));
        }
    }
}
