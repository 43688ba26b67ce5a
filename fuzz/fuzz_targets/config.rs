//! The config parser: any text gives a config or an error, never a panic; a config it accepts
//! prints (as `--check-config` does) to text that parses to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logsinkd::config::Config;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    if let Ok(config) = Config::from_toml(text, 1024) {
        let printed = config.to_string();
        let again = Config::from_toml(&printed, 1024).expect("printed config parses");
        assert_eq!(again.to_string(), printed);
    }
});
