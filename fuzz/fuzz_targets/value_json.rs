//! Arbitrary text into the JSON parser that reads item values back from transaction logs:
//! it may refuse the text but not panic, and what it accepts must survive our own JSON
//! writer, which is what a history row, the summary and the config are sent as; the YAML
//! writer (config.yaml) must take it too.

#![no_main]

use _core::core::values::{write_yaml, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(value) = Value::parse_json(text) else {
        return;
    };
    let json = value.to_json();
    let again = Value::parse_json(&json).unwrap_or_else(|e| panic!("{json:?} does not parse: {e}"));
    // Compared as text: NaN is not equal to itself as a value.
    assert_eq!(again.to_json(), json);
    write_yaml(&value, 0, &mut String::new());
});
