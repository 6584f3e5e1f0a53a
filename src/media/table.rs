//! `wandb.Table`: rows of cells with a type per column, checked as wandb checks them, and
//! the two JSON forms wandb writes: the run file (compact) and the artifact's (typed).

use std::sync::{Arc, OnceLock};

use crate::core::values::Value;
use crate::media::file::{FileKind, MediaFile};

/// Rows in the run file; the artifact holds them all.
pub const MAX_ROWS: usize = 10_000;
pub const MAX_ARTIFACT_ROWS: usize = 200_000;

#[derive(Clone, Debug)]
pub enum Cell {
    Value(Value),
    Media(Arc<MediaFile>),
}

/// wandb's type of a column's values (every column also allows None).
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnType {
    Unknown,
    Any,
    Number,
    String,
    Boolean,
    List(Box<ColumnType>, Option<usize>),
    Dict(Vec<(String, ColumnType)>),
    Media(FileKind),
}

impl ColumnType {
    fn of_value(value: &Value) -> Option<ColumnType> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Boolean,
            Value::Int(_) | Value::BigInt(_) | Value::Float(_) => ColumnType::Number,
            Value::Str(_) => ColumnType::String,
            Value::List(items) => {
                let element = items
                    .iter()
                    .filter_map(ColumnType::of_value)
                    .try_fold(ColumnType::Unknown, |acc, t| acc.merge(&t))
                    .unwrap_or(ColumnType::Any);
                ColumnType::List(Box::new(element), Some(items.len()))
            }
            Value::Map(entries) => ColumnType::Dict(
                entries
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            ColumnType::of_value(v).unwrap_or(ColumnType::Unknown),
                        )
                    })
                    .collect(),
            ),
            Value::Media(_) => ColumnType::Any,
        })
    }

    pub fn of_cell(cell: &Cell) -> Option<ColumnType> {
        match cell {
            Cell::Value(value) => ColumnType::of_value(value),
            Cell::Media(file) => Some(ColumnType::Media(file.kind)),
        }
    }

    /// The column's type after a value of type `other`; None when wandb refuses the mix.
    pub fn merge(&self, other: &ColumnType) -> Option<ColumnType> {
        Some(match (self, other) {
            (ColumnType::Any, _) => ColumnType::Any,
            (ColumnType::Unknown, t) | (t, ColumnType::Unknown) => t.clone(),
            // A list column takes the latest list's length, as wandb's list type does.
            (ColumnType::List(a, _), ColumnType::List(b, length)) => {
                ColumnType::List(Box::new(a.merge(b)?), *length)
            }
            (a, b) if a == b => a.clone(),
            (ColumnType::Dict(_), ColumnType::Dict(_)) => other.clone(),
            _ => return None,
        })
    }

    fn name(&self) -> String {
        match self {
            ColumnType::Unknown => "unknown".into(),
            ColumnType::Any => "any".into(),
            ColumnType::Number => "number".into(),
            ColumnType::String => "string".into(),
            ColumnType::Boolean => "boolean".into(),
            ColumnType::List(..) => "list".into(),
            ColumnType::Dict(_) => "typedDict".into(),
            ColumnType::Media(kind) => kind.class_name().to_string(),
        }
    }

    /// The type as wandb writes it in the artifact.
    fn to_value(&self) -> Value {
        let typed = |name: &str, params: Option<Value>| {
            let mut fields = Vec::new();
            if let Some(params) = params {
                fields.push(("params".to_string(), params));
            }
            fields.push(("wb_type".to_string(), Value::Str(name.to_string())));
            Value::Map(fields)
        };
        match self {
            ColumnType::List(element, length) => typed(
                "list",
                Some(Value::Map(vec![
                    ("element_type".into(), element.to_value()),
                    (
                        "length".into(),
                        length.map_or(Value::Null, |n| Value::Int(n as i64)),
                    ),
                ])),
            ),
            ColumnType::Dict(entries) => typed(
                "typedDict",
                Some(Value::Map(vec![(
                    "type_map".into(),
                    Value::Map(
                        entries
                            .iter()
                            .map(|(k, t)| (k.clone(), t.to_value()))
                            .collect(),
                    ),
                )])),
            ),
            ColumnType::Media(FileKind::Image) => {
                let constant = |is_set: bool, val: Value| {
                    typed(
                        "const",
                        Some(Value::Map(vec![
                            ("is_set".into(), Value::Bool(is_set)),
                            ("val".into(), val),
                        ])),
                    )
                };
                let params = [
                    "box_class_maps",
                    "box_layers",
                    "box_score_keys",
                    "class_map",
                    "mask_class_maps",
                    "mask_layers",
                ]
                .iter()
                .map(|&name| {
                    let value = if name == "box_score_keys" {
                        constant(true, Value::List(Vec::new()))
                    } else {
                        constant(false, Value::Map(Vec::new()))
                    };
                    (name.to_string(), value)
                })
                .collect();
                typed("image-file", Some(Value::Map(params)))
            }
            ColumnType::Media(kind) => typed(kind.type_name(), None),
            other => typed(&other.name(), None),
        }
    }

    /// How wandb prints the type; a union lists its members in this order.
    fn printed(&self) -> String {
        match self {
            ColumnType::List(element, _) => format!("{}[]", element.printed()),
            ColumnType::Dict(_) => "{".into(),
            ColumnType::Media(kind) => capitalized(kind.type_name()),
            other => capitalized(&other.name()),
        }
    }

    /// The column's declared type: its values' type or None, in wandb's order.
    fn optional_value(&self) -> Value {
        let none = Value::Map(vec![("wb_type".into(), Value::Str("none".into()))]);
        let allowed = if self.printed().as_str() < "None" {
            [self.to_value(), none]
        } else {
            [none, self.to_value()]
        };
        Value::Map(vec![
            (
                "params".into(),
                Value::Map(vec![(
                    "allowed_types".into(),
                    Value::List(allowed.to_vec()),
                )]),
            ),
            ("wb_type".into(), Value::Str("union".into())),
        ])
    }
}

#[derive(Debug)]
pub struct Table {
    /// Column names (strings, or ints as wandb allows).
    pub columns: Vec<Value>,
    pub rows: Vec<Vec<Cell>>,
    pub types: Vec<ColumnType>,
    /// Its JSON once logged: logged again, wandb refers to the same files and artifact.
    pub logged: OnceLock<Value>,
}

impl Table {
    /// Checks every row against the columns as `add_data` does, inferring column types;
    /// `mixed` allows any mix of types in a column.
    pub fn new(columns: Vec<Value>, rows: Vec<Vec<Cell>>, mixed: bool) -> Result<Self, String> {
        let start = if mixed {
            ColumnType::Any
        } else {
            ColumnType::Unknown
        };
        let mut types = vec![start; columns.len()];
        if rows.len() > MAX_ARTIFACT_ROWS {
            return Err(format!(
                "a table has at most {MAX_ARTIFACT_ROWS} rows, got {}",
                rows.len()
            ));
        }
        for (i, row) in rows.iter().enumerate() {
            if row.len() != columns.len() {
                return Err(format!(
                    "row {i} has {} cells, but the table has {} columns",
                    row.len(),
                    columns.len()
                ));
            }
            for (column, cell) in row.iter().enumerate() {
                let Some(cell_type) = ColumnType::of_cell(cell) else {
                    continue;
                };
                types[column] = types[column].merge(&cell_type).ok_or_else(|| {
                    format!(
                        "row {i} has a {} in column {}, which holds {} values (pass allow_mixed_types=True to allow this)",
                        cell_type.name(),
                        columns[column].to_json(),
                        types[column].name()
                    )
                })?;
            }
        }
        Ok(Self {
            columns,
            rows,
            types,
            logged: OnceLock::new(),
        })
    }

    /// The run file: `{"columns": ..., "data": ...}`, compact, at most `MAX_ROWS` rows,
    /// media cells as their class name.
    pub fn run_file_json(&self) -> String {
        let data = self.data(MAX_ROWS, |file| Value::Str(file.kind.class_name().into()));
        Value::Map(vec![
            ("columns".into(), Value::List(self.columns.clone())),
            ("data".into(), data),
        ])
        .to_json()
    }

    /// The first `rows` rows, each media cell as `media` gives it.
    fn data(&self, rows: usize, media: impl Fn(&MediaFile) -> Value) -> Value {
        let row = |cells: &Vec<Cell>| {
            let values = cells.iter().map(|cell| match cell {
                Cell::Value(v) => v.clone(),
                Cell::Media(file) => media(file),
            });
            Value::List(values.collect())
        };
        Value::List(self.rows.iter().take(rows).map(row).collect())
    }

    /// The artifact's copy: typed, keys sorted, Python's `json.dump` spacing, NaN as null;
    /// `media` gives each media cell's JSON (with its path inside the artifact).
    pub fn artifact_json(&self, media: impl Fn(&MediaFile) -> Value) -> String {
        let type_map = self
            .columns
            .iter()
            .zip(&self.types)
            .map(|(column, t)| (column_key(column), t.optional_value()))
            .collect();
        let table = Value::Map(vec![
            ("_type".into(), Value::Str("table".into())),
            (
                "column_types".into(),
                Value::Map(vec![
                    (
                        "params".into(),
                        Value::Map(vec![("type_map".into(), Value::Map(type_map))]),
                    ),
                    ("wb_type".into(), Value::Str("typedDict".into())),
                ]),
            ),
            ("columns".into(), Value::List(self.columns.clone())),
            ("data".into(), self.data(self.rows.len(), media)),
            ("log_mode".into(), Value::Str("IMMUTABLE".into())),
            ("ncols".into(), Value::Int(self.columns.len() as i64)),
            ("nrows".into(), Value::Int(self.rows.len() as i64)),
        ]);
        python_json(&table, true)
    }

    /// Roughly the memory of its cells, and all of the media in them, until it is stored.
    pub fn pending_bytes(&self) -> usize {
        if self.logged.get().is_some() {
            return 0;
        }
        let cells = self.rows.len() * self.columns.len() * std::mem::size_of::<Cell>();
        cells + self.media_files().map(|f| f.pending_bytes()).sum::<usize>()
    }

    pub fn media_files(&self) -> impl Iterator<Item = &Arc<MediaFile>> {
        self.rows.iter().flatten().filter_map(|cell| match cell {
            Cell::Media(file) => Some(file),
            Cell::Value(_) => None,
        })
    }
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn column_key(column: &Value) -> String {
    match column {
        Value::Str(s) => s.clone(),
        other => other.to_json(),
    }
}

/// JSON as Python's `json.dumps(value, sort_keys=True)` writes it: `", "` and `": "`,
/// non-ASCII escaped; `nan_as_null` for wandb's artifact encoding of NaN.
pub fn python_json(value: &Value, nan_as_null: bool) -> String {
    let mut out = String::new();
    write_python_json(value, nan_as_null, &mut out);
    out
}

fn write_python_json(value: &Value, nan_as_null: bool, out: &mut String) {
    match value {
        Value::Float(f) if nan_as_null && f.is_nan() => out.push_str("null"),
        Value::Str(s) => write_ascii_string(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_json(item, nan_as_null, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_ascii_string(key, out);
                out.push_str(": ");
                write_python_json(item, nan_as_null, out);
            }
            out.push('}');
        }
        other => other.write_json(out),
    }
}

fn write_ascii_string(s: &str, out: &mut String) {
    let mut plain = String::new();
    crate::core::values::write_json_string(s, &mut plain);
    for c in plain.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(values: Vec<Value>) -> Vec<Cell> {
        values.into_iter().map(Cell::Value).collect()
    }

    #[test]
    fn infers_and_checks_column_types() {
        let columns = vec![Value::Str("a".into()), Value::Str("b".into())];
        let rows = vec![
            cells(vec![Value::Int(1), Value::Str("x".into())]),
            cells(vec![Value::Float(2.5), Value::Null]),
        ];
        let table = Table::new(columns.clone(), rows, false).unwrap();
        assert_eq!(table.types, vec![ColumnType::Number, ColumnType::String]);
        let bad = vec![
            cells(vec![Value::Int(1), Value::Str("x".into())]),
            cells(vec![Value::Str("y".into()), Value::Null]),
        ];
        let err = Table::new(columns.clone(), bad.clone(), false).unwrap_err();
        assert!(err.contains("row 1") && err.contains("\"a\""), "{err}");
        assert!(Table::new(columns.clone(), bad, true).is_ok());
        let short = vec![cells(vec![Value::Int(1)])];
        assert!(Table::new(columns, short, false)
            .unwrap_err()
            .contains("1 cells"));
    }

    #[test]
    fn writes_both_forms_as_wandb() {
        let columns = vec![Value::Str("a".into()), Value::Str("b".into())];
        let rows = vec![
            cells(vec![Value::Int(1), Value::Str("x".into())]),
            cells(vec![Value::Int(2), Value::Str("y".into())]),
        ];
        let table = Table::new(columns, rows, false).unwrap();
        assert_eq!(
            table.run_file_json(),
            r#"{"columns":["a","b"],"data":[[1,"x"],[2,"y"]]}"#
        );
        // The artifact JSON wandb 0.31.0 wrote for this table.
        assert_eq!(
            table.artifact_json(|_| Value::Null),
            r#"{"_type": "table", "column_types": {"params": {"type_map": {"a": {"params": {"allowed_types": [{"wb_type": "none"}, {"wb_type": "number"}]}, "wb_type": "union"}, "b": {"params": {"allowed_types": [{"wb_type": "none"}, {"wb_type": "string"}]}, "wb_type": "union"}}}, "wb_type": "typedDict"}, "columns": ["a", "b"], "data": [[1, "x"], [2, "y"]], "log_mode": "IMMUTABLE", "ncols": 2, "nrows": 2}"#
        );
    }

    #[test]
    fn python_json_escapes_and_sorts() {
        let value = Value::Map(vec![
            ("b".into(), Value::Float(f64::NAN)),
            ("a".into(), Value::Str("é".into())),
        ]);
        assert_eq!(python_json(&value, true), r#"{"a": "\u00e9", "b": null}"#);
    }
}
