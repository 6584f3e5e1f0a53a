//! Property tests of the value JSON that history rows, the summary and the config are
//! written in: whatever `Value` is written, reading its JSON back gives the same value.
//! (Rust integration tests; the Python suite beside them is pytest's.)

use _core::core::values::Value;
use proptest::prelude::*;

/// Values as they come from Python: integers beyond 64 bits are `BigInt`, any float
/// (NaN and the infinities included), any string, nested lists and maps.
fn values() -> impl Strategy<Value = Value> {
    let big_int = (any::<bool>(), (i64::MAX as u128 + 1)..=u128::MAX)
        .prop_map(|(negative, n)| Value::BigInt(format!("{}{n}", if negative { "-" } else { "" })));
    let float = prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        big_int,
        float.prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            prop::collection::vec((any::<String>(), inner), 0..8).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_reads_back_as_the_value_written(value in values()) {
        let json = value.to_json();
        let read = Value::parse_json(&json).map_err(TestCaseError::fail)?;
        // Compared by their Debug text: NaN is not equal to itself, and -0.0 is equal to 0.0.
        prop_assert_eq!(format!("{read:?}"), format!("{value:?}"), "JSON: {}", json);
    }
}
