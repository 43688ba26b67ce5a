//! The scanner on real senders' messages, and its invariants on any bytes.

use proptest::prelude::*;

use super::testing::check_slices;
use super::*;

/// A message's fields in one line: `<PRI> protocol time=[…] host=[…] app=[…] pid=[…]
/// msgid=[…] sd=[…] msg=[…]`, fields that are None left out; `none` when `parse` gives None.
fn show(input: &[u8]) -> String {
    let Some(m) = parse(input) else {
        return "none".into();
    };
    check_slices(input, &m);
    let mut s = match m.pri {
        Some(p) => format!("<{}>", p.value()),
        None => "<>".into(),
    };
    s += match m.protocol {
        Protocol::Rfc5424 => " 5424",
        Protocol::Rfc3164 => " 3164",
    };
    for (name, field) in [
        ("time", m.timestamp),
        ("host", m.hostname),
        ("app", m.app),
        ("pid", m.procid),
        ("msgid", m.msgid),
        ("sd", m.sd),
        ("msg", Some(m.msg)),
    ] {
        if let Some(f) = field {
            s += &format!(" {name}=[{}]", esc(f));
        }
    }
    s
}

/// `bytes` with printable ASCII as it is, LF as `\n`, any other byte as `\xHH`.
fn esc(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b' '..=b'~' => s.push(char::from(b)),
            b'\n' => s += "\\n",
            _ => s += &format!("\\x{b:02x}"),
        }
    }
    s
}

/// Checks each `(message, fields)` pair.
fn assert_fields(cases: &[(&[u8], &str)]) {
    for (input, want) in cases {
        assert_eq!(show(input), *want, "{}", input.escape_ascii());
    }
}

/// What util-linux `logger` sends: `--rfc5424` (its default) and `--rfc3164`, to a socket
/// (no host) and over the network.
#[test]
fn logger() {
    assert_fields(&[
        (
            b"<13>1 2026-12-01T16:20:01.123456+01:00 myhost root - - [timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"233000\"] hello world",
            "<13> 5424 time=[2026-12-01T16:20:01.123456+01:00] host=[myhost] app=[root] sd=[[timeQuality tzKnown=\"1\" isSynced=\"1\" syncAccuracy=\"233000\"]] msg=[hello world]",
        ),
        (
            b"<13>1 2026-12-01T16:20:01.123456+01:00 myhost myapp 4242 - - hello",
            "<13> 5424 time=[2026-12-01T16:20:01.123456+01:00] host=[myhost] app=[myapp] pid=[4242] msg=[hello]",
        ),
        (
            b"<13>Dec  1 16:20:01 myhost myapp[4242]: hello",
            "<13> 3164 time=[Dec  1 16:20:01] host=[myhost] app=[myapp] pid=[4242] msg=[hello]",
        ),
        (
            b"<13>Dec  1 16:20:01 root: hello",
            "<13> 3164 time=[Dec  1 16:20:01] app=[root] msg=[hello]",
        ),
        (
            b"<13>Dec 11 16:20:01 myapp[4242]: ",
            "<13> 3164 time=[Dec 11 16:20:01] app=[myapp] pid=[4242] msg=[]",
        ),
    ]);
}

/// rsyslog's forwarding templates: `RSYSLOG_SyslogProtocol23Format` (its LF kept, as an
/// octet-counted frame carries it), `RSYSLOG_ForwardFormat`, `RSYSLOG_TraditionalForwardFormat`.
#[test]
fn rsyslog_templates() {
    assert_fields(&[
        (
            b"<86>1 2026-12-01T16:20:01.123456+01:00 myhost sshd 4242 - - Accepted publickey for x\n",
            "<86> 5424 time=[2026-12-01T16:20:01.123456+01:00] host=[myhost] app=[sshd] pid=[4242] msg=[Accepted publickey for x\\n]",
        ),
        (
            b"<86>2026-12-01T16:20:01.123456+01:00 myhost sshd[4242]: Accepted publickey for x",
            "<86> 3164 time=[2026-12-01T16:20:01.123456+01:00] host=[myhost] app=[sshd] pid=[4242] msg=[Accepted publickey for x]",
        ),
        (
            b"<86>Dec  1 16:20:01 myhost sshd[4242]: Accepted publickey for x",
            "<86> 3164 time=[Dec  1 16:20:01] host=[myhost] app=[sshd] pid=[4242] msg=[Accepted publickey for x]",
        ),
    ]);
}

/// RFC 5424's own examples (section 6.5), and its BOM kept in `msg`.
#[test]
fn rfc5424_examples() {
    let bom = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8";
    assert_fields(&[
        (
            bom,
            "<34> 5424 time=[2003-10-11T22:14:15.003Z] host=[mymachine.example.com] app=[su] msgid=[ID47] msg=[\\xef\\xbb\\xbf'su root' failed for lonvick on /dev/pts/8]",
        ),
        (
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
            "<165> 5424 time=[2003-08-24T05:14:15.000003-07:00] host=[192.0.2.1] app=[myproc] pid=[8710] msg=[%% It's time to make the do-nuts.]",
        ),
        (
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] An application event log entry...",
            "<165> 5424 time=[2003-10-11T22:14:15.003Z] host=[mymachine.example.com] app=[evntslog] msgid=[ID47] sd=[[exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"]] msg=[An application event log entry...]",
        ),
        (
            b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\"][examplePriority@32473 class=\"high\"]",
            "<165> 5424 time=[2003-10-11T22:14:15.003Z] host=[mymachine.example.com] app=[evntslog] msgid=[ID47] sd=[[exampleSDID@32473 iut=\"3\"][examplePriority@32473 class=\"high\"]] msg=[]",
        ),
        (
            b"<0>1 - - - - - -",
            "<0> 5424 msg=[]",
        ),
    ]);
    let m = parse(bom).expect("parses");
    assert_eq!(
        m.msg_without_bom(),
        b"'su root' failed for lonvick on /dev/pts/8"
    );
    assert_eq!(
        parse(b"<13>1 - - - - - - x")
            .expect("parses")
            .msg_without_bom(),
        b"x"
    );
}

/// A message that starts as 5424 but breaks its grammar keeps its PRI and all after it as
/// `msg`; the limits on each field are part of the grammar.
#[test]
fn rfc5424_broken() {
    let rest = |m: &[u8]| format!("<13> 3164 msg=[{}]", esc(&m[4..]));
    let app48 = "a".repeat(48);
    let app49 = "a".repeat(49);
    let host255 = "h".repeat(255);
    let host256 = "h".repeat(256);
    let ok = [
        format!("<13>1 - - {app48} - - -"),
        format!("<13>1 - {host255} - - - -"),
        format!("<13>1 - - - {} {} -", "p".repeat(128), "m".repeat(32)),
    ];
    for m in &ok {
        assert!(show(m.as_bytes()).starts_with("<13> 5424"), "{m}");
    }
    let broken = [
        format!("<13>1 - - {app49} - - -"),
        format!("<13>1 - {host256} - - - -"),
        format!("<13>1 - - - {} - -", "p".repeat(129)),
        format!("<13>1 - - - - {} -", "m".repeat(33)),
        "<13>1 2026-12-01T16:20:01Z host app - - [bad".into(),
        "<13>1 2026-12-01T16:20:01Z host app - - [id a=\"1\"]msg".into(),
        "<13>1 2026-12-01T16:20:01Z host app - - -msg".into(),
        "<13>1 2026-12-01T16:20:01Z host app - -".into(),
        "<13>1 2026-12-01T16:20:01Z host  app - - - msg".into(),
        "<13>1 2026-12-01 host app - - - msg".into(),
        "<13>1 Dec  1 16:20:01 host app - - - msg".into(),
        "<13>1 2026-12-01T16:20:01Z h\u{e9}st app - - - msg".into(),
        "<13>1 2026-12-01T16:20:01Z host app - - [exampleSDID@32473 iut=\"3\" eventSource= \"Application\"] x".into(),
        "<13>1".into(),
    ];
    for m in &broken {
        assert_eq!(show(m.as_bytes()), rest(m.as_bytes()), "{m}");
    }
    // Not version 1: 3164, which finds nothing to read.
    assert_eq!(
        show(b"<13>2 - - - - - - x"),
        "<13> 3164 msg=[2 - - - - - - x]"
    );
}

/// The PRI: 0 to 191, one to three digits, no leading zero; without one, a message parses only
/// if it starts with a timestamp.
#[test]
fn pri_values() {
    assert_fields(&[
        (b"<0>x", "<0> 3164 msg=[x]"),
        (b"<191>x", "<191> 3164 msg=[x]"),
        (b"<192>x", "none"),
        (b"<013>x", "none"),
        (b"<00>x", "none"),
        (b"<1234>x", "none"),
        (b"<>x", "none"),
        (b"<13", "none"),
        (b"<13>", "<13> 3164 msg=[]"),
        (b"", "none"),
        (b"This is a message!", "none"),
        (
            b"Feb 18 16:01:59 serverX -- MARK --",
            "<> 3164 time=[Feb 18 16:01:59] host=[serverX] msg=[-- MARK --]",
        ),
        (
            b"2026-12-01T16:20:01Z host app: msg",
            "<> 3164 time=[2026-12-01T16:20:01Z] host=[host] app=[app] msg=[msg]",
        ),
        (b" Dec  1 16:20:01 host app: msg", "none"),
        (b"1 2026-12-01T16:20:01Z host app - - - msg", "none"),
    ]);
    let p = Pri::from_value(165).expect("valid");
    assert_eq!((p.facility, p.severity, p.value()), (20, 5, 165));
    assert_eq!((p.facility_name(), p.severity_name()), ("local4", "notice"));
    assert_eq!(Pri::from_value(192), None);
    let names: Vec<&str> = (0..24)
        .map(|f| {
            Pri {
                facility: f,
                severity: 0,
            }
            .facility_name()
        })
        .collect();
    assert_eq!(
        names.join(" "),
        "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp security console solaris-cron local0 local1 local2 local3 local4 local5 local6 local7"
    );
    let names: Vec<&str> = (0..8)
        .map(|s| {
            Pri {
                facility: 0,
                severity: s,
            }
            .severity_name()
        })
        .collect();
    assert_eq!(
        names.join(" "),
        "emerg alert crit err warning notice info debug"
    );
    assert_eq!(
        Pri {
            facility: 24,
            severity: 8
        }
        .facility_name(),
        "unknown"
    );
}

/// The 3164 timestamp variants: day padded or not, a year, RFC 3339, a `:` after the time,
/// HP's space after the PRI, the month in capitals.
#[test]
fn rfc3164_times() {
    assert_fields(&[
        (
            b"<13>Dec 1 16:20:01 host app: m",
            "<13> 3164 time=[Dec 1 16:20:01] host=[host] app=[app] msg=[m]",
        ),
        (
            b"<175>Oct 16 2009 23:47:31 hostname tag[1234] This is a message",
            "<175> 3164 time=[Oct 16 2009 23:47:31] host=[hostname] app=[tag] pid=[1234] msg=[This is a message]",
        ),
        (
            b"<13>2026-12-01T16:20:01Z host app: msg",
            "<13> 3164 time=[2026-12-01T16:20:01Z] host=[host] app=[app] msg=[msg]",
        ),
        (
            b"<167>Mar 7 19:06:53: example tag: testmessage",
            "<167> 3164 time=[Mar 7 19:06:53] host=[example] app=[tag] msg=[testmessage]",
        ),
        (
            b"<38> Mar  7 19:06:53 example tag: testmessage",
            "<38> 3164 time=[Mar  7 19:06:53] host=[example] app=[tag] msg=[testmessage]",
        ),
        (
            b"<167>AUG 10 22:18:24 host tag: 8-bit: \xc3\xa4\xc3\xb6\xc3\xbc",
            "<167> 3164 time=[AUG 10 22:18:24] host=[host] app=[tag] msg=[8-bit: \\xc3\\xa4\\xc3\\xb6\\xc3\\xbc]",
        ),
        (
            b"<14>Jan  6 2009 15:22:26 localhost",
            "<14> 3164 time=[Jan  6 2009 15:22:26] host=[localhost] msg=[]",
        ),
        (
            b"<14>Aug 30 23:00:05",
            "<14> 3164 time=[Aug 30 23:00:05] msg=[]",
        ),
        (
            b"<14>Aug 30 23:00:05 ",
            "<14> 3164 time=[Aug 30 23:00:05] msg=[]",
        ),
        (
            b"<14>Aug 30 23:00:05 X4711 ",
            "<14> 3164 time=[Aug 30 23:00:05] host=[X4711] msg=[]",
        ),
        // Not times: the text after the PRI is the message.
        (
            b"<13>Dec 32 16:20:01 host app: m",
            "<13> 3164 msg=[Dec 32 16:20:01 host app: m]",
        ),
        (
            b"<13>Dec  1 16:20 host app: m",
            "<13> 3164 msg=[Dec  1 16:20 host app: m]",
        ),
        (
            b"<13>  Dec  1 16:20:01 host app: m",
            "<13> 3164 msg=[  Dec  1 16:20:01 host app: m]",
        ),
    ]);
}

/// Telling the host from the tag: a tag ends in `:` or has `[pid]`, a host does not; a word
/// after the host that is no tag is text.
#[test]
fn rfc3164_host_and_tag() {
    assert_fields(&[
        (
            b"<13>Dec  1 16:20:01 sshd[42]: msg",
            "<13> 3164 time=[Dec  1 16:20:01] app=[sshd] pid=[42] msg=[msg]",
        ),
        (
            b"<167>Mar 27 19:06:53 source_server sshd(pam_unix)[12750]: session opened for user foo by (uid=0)",
            "<167> 3164 time=[Mar 27 19:06:53] host=[source_server] app=[sshd(pam_unix)] pid=[12750] msg=[session opened for user foo by (uid=0)]",
        ),
        (
            b"<38>Mar 27 19:06:53 source_server 0123456789012345678901234567890123456789: MSG part",
            "<38> 3164 time=[Mar 27 19:06:53] host=[source_server] app=[0123456789012345678901234567890123456789] msg=[MSG part]",
        ),
        (
            b"<167>Mar  6 16:57:54 172.20.245.8 %PIX-7-710005: UDP request discarded",
            "<167> 3164 time=[Mar  6 16:57:54] host=[172.20.245.8] app=[%PIX-7-710005] msg=[UDP request discarded]",
        ),
        (
            b"<13>Dec  1 16:20:01 2001:db8::1 app[7]: v6",
            "<13> 3164 time=[Dec  1 16:20:01] host=[2001:db8::1] app=[app] pid=[7] msg=[v6]",
        ),
        (
            b"<13>Dec  1 16:20:01 host some text: here",
            "<13> 3164 time=[Dec  1 16:20:01] host=[host] msg=[some text: here]",
        ),
        (
            b"<13>Dec  1 16:20:01 - app: nil host",
            "<13> 3164 time=[Dec  1 16:20:01] app=[app] msg=[nil host]",
        ),
        (
            b"<34>Oct 11 22:14:15 : a message",
            "<34> 3164 time=[Oct 11 22:14:15] msg=[a message]",
        ),
        (
            b"<164>Aug 08 16:58:18 DEVICE123 : %FTD-4-106023: test cisco asa",
            "<164> 3164 time=[Aug 08 16:58:18] host=[DEVICE123] msg=[%FTD-4-106023: test cisco asa]",
        ),
        (
            b"<6>AUG 10 22:18:24 2009  netips-warden2-p [audit] user=[*SMS]",
            "<6> 3164 time=[AUG 10 22:18:24] host=[2009] msg=[ netips-warden2-p [audit] user=[*SMS]]",
        ),
        (
            b"<13>Dec  1 16:20:01 app:  indented",
            "<13> 3164 time=[Dec  1 16:20:01] app=[app] msg=[ indented]",
        ),
        (
            b"<13>Dec  1 16:20:01 {\"json\": 1}",
            "<13> 3164 time=[Dec  1 16:20:01] msg=[{\"json\": 1}]",
        ),
        (
            b"<13>Dec  1 16:20:01 host app[]: x",
            "<13> 3164 time=[Dec  1 16:20:01] host=[host] msg=[app[]: x]",
        ),
        (
            b"<13>Dec  1 16:20:01 host app:x",
            "<13> 3164 time=[Dec  1 16:20:01] host=[host] msg=[app:x]",
        ),
    ]);
}

/// After a PRI with no time, only a tag is read (`xapi:`, Cisco ASA's `%ASA-…:`).
#[test]
fn rfc3164_no_time() {
    assert_fields(&[
        (
            b"<27>xapi: [error|xen3|15|Guest liveness monitor D:bca30ab3f1c1|master_connection] Connection to master died.",
            "<27> 3164 app=[xapi] msg=[[error|xen3|15|Guest liveness monitor D:bca30ab3f1c1|master_connection] Connection to master died.]",
        ),
        (
            b"<166>%ASA-6-302013: Built outbound TCP connection 123 for outside:192.0.2.1/443",
            "<166> 3164 app=[%ASA-6-302013] msg=[Built outbound TCP connection 123 for outside:192.0.2.1/443]",
        ),
        (b"<13>myapp[42] started", "<13> 3164 app=[myapp] pid=[42] msg=[started]"),
        (b"<13>{\"a\":1}", "<13> 3164 msg=[{\"a\":1}]"),
        (b"<13>[42]: x", "<13> 3164 msg=[[42]: x]"),
        (b"<13>: x", "<13> 3164 msg=[: x]"),
        (b"<13>hello world", "<13> 3164 msg=[hello world]"),
    ]);
}

/// Cisco IOS, IOS XE, NX-OS and ASA as they send (samples from syslog-ng's Cisco parser
/// tests): counter, sequence number, origin, `*`/`.` marks, milliseconds, zone, year.
#[test]
fn cisco() {
    assert_fields(&[
        (
            b"<189>29: foo: *Apr 29 13:58:40.411: %SYS-5-CONFIG_I: Configured from console by console",
            "<189> 3164 time=[Apr 29 13:58:40.411] host=[foo] app=[%SYS-5-CONFIG_I] msg=[Configured from console by console]",
        ),
        (
            b"<189>35: *Apr 29 14:00:16.059: %SYS-5-CONFIG_I: Configured from console by console",
            "<189> 3164 time=[Apr 29 14:00:16.059] app=[%SYS-5-CONFIG_I] msg=[Configured from console by console]",
        ),
        (
            b"<180>782431: machine1: .Nov 18 21:03:22.631 GMT: %CDP-4-NATIVE_VLAN_MISMATCH: Native VLAN mismatch discovered",
            "<180> 3164 time=[Nov 18 21:03:22.631 GMT] host=[machine1] app=[%CDP-4-NATIVE_VLAN_MISMATCH] msg=[Native VLAN mismatch discovered]",
        ),
        (
            b"<190>123030: some-remote-host: %SYS-5-LOGGINGHOST_STARTSTOP: Logging to host 192.168.1.239 stopped",
            "<190> 3164 host=[some-remote-host] app=[%SYS-5-LOGGINGHOST_STARTSTOP] msg=[Logging to host 192.168.1.239 stopped]",
        ),
        (
            b"<189>32: 0.0.0.0: *Apr 29 13:59:12.491: %SYS-5-CONFIG_I: Configured from console by console",
            "<189> 3164 time=[Apr 29 13:59:12.491] host=[0.0.0.0] app=[%SYS-5-CONFIG_I] msg=[Configured from console by console]",
        ),
        (
            b"<189>123: 000045: Dec  1 2026 16:20:01.123 UTC: %LINK-3-UPDOWN: Interface Gi0/1, changed state to up",
            "<189> 3164 time=[Dec  1 2026 16:20:01.123 UTC] app=[%LINK-3-UPDOWN] msg=[Interface Gi0/1, changed state to up]",
        ),
        (
            b"<189>16261: May 28 16:09:56.185: %SYS-5-CONFIG_I: Configured from console by adminsepp on vty0 (10.23.214.226)",
            "<189> 3164 time=[May 28 16:09:56.185] app=[%SYS-5-CONFIG_I] msg=[Configured from console by adminsepp on vty0 (10.23.214.226)]",
        ),
        (
            b"<187>: 2025 Jun 25 11:27:28 GMT: %AUTHPRIV-3-SYSTEM_MSG: pam_aaa:Authentication failed from 192.168.1.10 - dcos_sshd[23099]",
            "<187> 3164 time=[2025 Jun 25 11:27:28 GMT] app=[%AUTHPRIV-3-SYSTEM_MSG] msg=[pam_aaa:Authentication failed from 192.168.1.10 - dcos_sshd[23099]]",
        ),
        (
            b"<189>*Mar  1 18:46:11: %SYS-5-CONFIG_I: Configured from console by vty2 (10.34.195.36)",
            "<189> 3164 time=[Mar  1 18:46:11] app=[%SYS-5-CONFIG_I] msg=[Configured from console by vty2 (10.34.195.36)]",
        ),
        (
            b"<166>Jan 05 2026 10:00:00: %ASA-6-302013: Built outbound TCP connection",
            "<166> 3164 time=[Jan 05 2026 10:00:00] app=[%ASA-6-302013] msg=[Built outbound TCP connection]",
        ),
        (
            b"<166>2022-02-16T15:31:53Z na-zy-int-fp1140-p02 : %FTD-6-305012: Teardown dynamic TCP translation",
            "<166> 3164 time=[2022-02-16T15:31:53Z] host=[na-zy-int-fp1140-p02] msg=[%FTD-6-305012: Teardown dynamic TCP translation]",
        ),
        (
            b"<187>138076: RP/0/RP0/CPU0:Dec 11 12:43:29.227 EST: snmpd[1002]: %SNMP-SNMP-3-AUTH_FAIL : Received snmp request",
            "<187> 3164 msg=[138076: RP/0/RP0/CPU0:Dec 11 12:43:29.227 EST: snmpd[1002]: %SNMP-SNMP-3-AUTH_FAIL : Received snmp request]",
        ),
        // Uptime stamps are not times: all after the PRI is the message.
        (
            b"<189>38: 00:13:28: %SYS-5-CONFIG_I: Configured from console by console",
            "<189> 3164 msg=[38: 00:13:28: %SYS-5-CONFIG_I: Configured from console by console]",
        ),
        (
            b"<189>38: 1w2d: %SYS-5-CONFIG_I: Configured from console by console",
            "<189> 3164 msg=[38: 1w2d: %SYS-5-CONFIG_I: Configured from console by console]",
        ),
        (b"<13>12345: hello", "<13> 3164 msg=[12345: hello]"),
        (b"<13>.profile changed", "<13> 3164 msg=[.profile changed]"),
    ]);
}

/// A Java stack trace's LFs stay in `msg`, unscanned.
#[test]
fn multi_line() {
    let trace = b"Exception in thread \"main\" java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:42)\n\tat com.example.App.main(App.java:7)\n";
    let mut m5424 = b"<11>1 2026-12-01T16:20:01.5Z app01 billing 77 - - ".to_vec();
    m5424.extend_from_slice(trace);
    assert_eq!(parse(&m5424).expect("parses").msg, trace);
    let mut m3164 = b"<11>Dec  1 16:20:01 app01 billing[77]: ".to_vec();
    m3164.extend_from_slice(trace);
    assert_eq!(parse(&m3164).expect("parses").msg, trace);
}

/// A message built from syslog-looking pieces, so that random ones reach deep into the
/// scanner.
fn syslogish() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: [&[u8]; 20] = [
        b"<13>",
        b"<189>",
        b"1 ",
        b"2026-12-01T16:20:01.123+01:00",
        b"Dec  1 16:20:01",
        b"Feb 29 2028 1:02:03.45 UTC",
        b" ",
        b": ",
        b"-",
        b"*",
        b"123",
        b"host",
        b"app[42]:",
        b"[id a=\"x\\\"\\]\"]",
        b"[x",
        b"\"",
        b"\\",
        b"\xEF\xBB\xBF",
        b"\n",
        b"%SYS-5-CONFIG_I:",
    ];
    let piece = prop::sample::select(&PIECES[..]);
    prop::collection::vec(
        prop_oneof![
            4 => piece.prop_map(<[u8]>::to_vec),
            1 => prop::collection::vec(any::<u8>(), 0..4),
        ],
        0..14,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    /// Whatever the bytes, `parse` does not panic, every slice lies inside the message in
    /// order, `msg` ends it, a PRI always parses and the structured data walks; the time,
    /// when there is one, converts or says it cannot, without panicking.
    #[test]
    fn any_bytes(input in prop_oneof![syslogish(), prop::collection::vec(any::<u8>(), 0..64)]) {
        let m = parse(&input);
        if let Some(m) = &m {
            check_slices(&input, m);
            let mut out = Vec::new();
            let receipt = time::macros::datetime!(2026-06-15 12:00:00 UTC);
            if rfc3339_timestamp(m, receipt, &mut out) {
                prop_assert!(timestamp::rfc3339_len(&out) == Some(out.len()), "{}", out.escape_ascii());
            } else {
                prop_assert!(out.is_empty());
            }
        }
        if super::pri(&input).is_some() {
            prop_assert!(m.is_some());
        }
    }
}

/// How long a parse takes, for the record (`cargo test --release --lib syslog_parse_speed --
/// --ignored --nocapture`); not a benchmark, one quick loop, timed in the thread's CPU time so
/// that other work on the machine counts less.
#[test]
#[ignore]
fn syslog_parse_speed() {
    fn cpu_ns() -> u128 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for clock_gettime to fill.
        let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        assert_eq!(r, 0, "clock_gettime");
        t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
    }
    let m5424: &[u8] = b"<165>1 2026-12-01T16:20:01.123456+01:00 host.example.com myapp 4242 ID47 - An application event log entry of a hundred bytes";
    let m3164: &[u8] = b"<86>Dec  1 16:20:01 host.example.com sshd[4242]: Accepted publickey for deploy from 192.0.2.7 port 514";
    for m in [m5424, m3164] {
        let n = 1_000_000;
        let start = cpu_ns();
        for _ in 0..n {
            std::hint::black_box(parse(std::hint::black_box(m)));
        }
        println!("{} bytes: {} ns a parse", m.len(), (cpu_ns() - start) / n);
    }
}
