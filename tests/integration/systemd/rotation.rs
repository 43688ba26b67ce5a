//! Rotation with the shipped logrotate file while a client streams: nothing lost, nothing
//! repeated, and the service reloaded rather than restarted.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::machine::MACHINE_DEADLINE;
use super::{ADDR, LOG, boot_with_package, start};
use crate::util::{split_record, wait_until};

/// `logrotate -f` twice while a client streams: no line lost or repeated, no restart.
#[test]
fn logrotate_while_streaming_loses_and_repeats_nothing() {
    let Some(machine) = boot_with_package("logrotate_while_streaming_loses_and_repeats_nothing")
    else {
        return;
    };
    start(&machine);
    let pid_before = machine.main_pid("logsinkd.service");

    let stop = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicBool::new(false));
    let mut client = machine.connect(ADDR);
    let streamer = {
        let (stop, broken) = (stop.clone(), broken.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: String = (sent..sent + 50).map(|n| format!("seq {n:08}\n")).collect();
                if client.write_all(batch.as_bytes()).is_err() {
                    broken.store(true, Ordering::Relaxed);
                    break;
                }
                sent += 50;
            }
            sent
        })
    };
    // notifempty: only a file with records is rotated, so wait for some before each rotation.
    let wait_for_stream = || {
        wait_until(
            &format!("500 streamed records in {LOG}"),
            MACHINE_DEADLINE,
            || {
                assert!(
                    !broken.load(Ordering::Relaxed),
                    "the client's connection broke: was the service restarted?"
                );
                (machine.read(LOG).lines().count() >= 500).then_some(())
            },
        )
    };
    wait_for_stream();
    machine.ok("logrotate", &["-f", "/etc/logrotate.d/logsinkd"]);
    wait_for_stream();
    machine.ok("logrotate", &["-f", "/etc/logrotate.d/logsinkd"]);
    wait_for_stream();
    stop.store(true, Ordering::Relaxed);
    let sent = streamer.join().unwrap();

    let files = [format!("{LOG}.2.gz"), format!("{LOG}.1"), LOG.to_string()];
    let all = wait_until("every streamed line on disk", MACHINE_DEADLINE, || {
        let mut args = vec!["-f"];
        args.extend(files.iter().map(String::as_str));
        let text = machine.ok("zcat", &args);
        (text.lines().count() as u64 >= sent).then_some(text)
    });
    let numbers: Vec<u64> = all
        .lines()
        .map(|r| {
            split_record(r)
                .2
                .strip_prefix("seq ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..sent).collect();
    assert!(
        numbers == expected,
        "{} records for {sent} lines sent; first difference at index {:?}",
        numbers.len(),
        numbers.iter().zip(&expected).position(|(a, b)| a != b)
    );
    for file in &files {
        assert!(
            !machine.ok("zcat", &["-f", file]).is_empty(),
            "{file} is empty: a rotation did not split the stream"
        );
    }

    assert_eq!(
        machine.main_pid("logsinkd.service"),
        pid_before,
        "the service was restarted"
    );
    assert_eq!(machine.show("logsinkd.service", "NRestarts"), "0");
    let reopened = machine
        .journal(Some("logsinkd"))
        .iter()
        .filter(|e| e.is_daemon() && e.message == format!("reopened {LOG}"))
        .count();
    assert_eq!(reopened, 2, "one reopen per rotation");
    let uid = machine.proc_status(pid_before, "Uid");
    let owner = std::fs::metadata(machine.path(LOG))
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    assert_eq!(
        uid.split_whitespace().next().unwrap(),
        owner.to_string(),
        "owner of the new {LOG}"
    );
}
