//! Python objects to [`Value`]s and back. Exact built-in types are tried first (the common,
//! fast path); numpy values and datetimes are recognised by their type's module, so numpy is
//! never imported here.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::core::values::{Key, Tree, Value};
use crate::error::Error;

/// Deeper structures are refused: wandb's UI cannot show them, and a cycle ends here too.
pub const MAX_DEPTH: usize = 100;

/// A conversion failure, with the path to the offending value gathered on the way out.
struct Unsupported {
    path: Vec<String>,
    reason: String,
}

impl Unsupported {
    fn new(reason: String) -> Self {
        Self {
            path: Vec::new(),
            reason,
        }
    }

    fn under(mut self, key: String) -> Self {
        self.path.push(key);
        self
    }

    fn into_error(mut self, action: &'static str, top: &str) -> Error {
        self.path.push(top.to_string());
        self.path.reverse();
        Error::UnsupportedValue {
            action,
            key: self.path.join("."),
            reason: self.reason,
        }
    }
}

/// Converts the items of a dict of top-level keys (what `config.update` and `summary.update`
/// receive); `action` ("set config", ...) goes into error messages.
pub fn dict_items(
    data: &Bound<'_, PyAny>,
    action: &'static str,
) -> Result<Vec<(String, Value)>, Error> {
    as_dict(data, action)?
        .iter()
        .map(|(key, value)| {
            let (key, value) = dict_item(&key, &value, action)?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

/// The values of one `log()` call, converted straight into a row's tree.
pub fn row_values(data: &Bound<'_, PyAny>) -> Result<Tree, Error> {
    let dict = as_dict(data, "log")?;
    let mut values = Tree::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let (key, value) = dict_item(&key, &value, "log")?;
        // A dict's keys are distinct: nothing to look for.
        values.merge_new_key(Key::from(key), value);
    }
    Ok(values)
}

fn as_dict<'a, 'py>(
    data: &'a Bound<'py, PyAny>,
    action: &'static str,
) -> Result<&'a Bound<'py, PyDict>, Error> {
    data.cast::<PyDict>().map_err(|_| Error::UnsupportedValue {
        action,
        key: String::new(),
        reason: format!("expected a dict, got {}", type_name(data)),
    })
}

/// One item of a dict of top-level keys: its key as text and its value converted.
fn dict_item<'a>(
    key: &'a Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    action: &'static str,
) -> Result<(&'a str, Value), Error> {
    let key = dict_key(key).map_err(|e| Error::UnsupportedValue {
        action,
        key: String::new(),
        reason: e.reason,
    })?;
    let value = to_value(value, 1).map_err(|e| e.into_error(action, key))?;
    Ok((key, value))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "<unknown type>".to_string())
}

fn dict_key<'a>(key: &'a Bound<'_, PyAny>) -> Result<&'a str, Unsupported> {
    match key.cast::<PyString>() {
        Ok(s) => s
            .to_str()
            .map_err(|e| Unsupported::new(format!("key is not valid text: {e}"))),
        Err(_) => Err(Unsupported::new(format!(
            "keys must be strings, got {} key {}",
            type_name(key),
            key.repr().map(|r| r.to_string()).unwrap_or_default()
        ))),
    }
}

fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Unsupported> {
    if depth > MAX_DEPTH {
        return Err(Unsupported::new(format!(
            "nested deeper than {MAX_DEPTH} levels (is the structure cyclic?)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(match i.extract::<i64>() {
            Ok(v) => Value::Int(v),
            Err(_) => Value::BigInt(i.str().map_err(python_error)?.to_string()),
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::Str(s.to_owned()))
            .map_err(|e| Unsupported::new(format!("string is not valid text: {e}")));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut entries = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            let key = dict_key(&key)?.to_owned();
            let value = to_value(&value, depth + 1).map_err(|e| e.under(key.clone()))?;
            entries.push((key, value));
        }
        return Ok(Value::Map(entries));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return sequence(list.iter(), depth);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return sequence(tuple.iter(), depth);
    }
    foreign(obj, depth)
}

fn sequence<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
) -> Result<Value, Unsupported> {
    items
        .enumerate()
        .map(|(i, item)| to_value(&item, depth + 1).map_err(|e| e.under(format!("[{i}]"))))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::List)
}

/// numpy scalars and arrays (through `tolist()`), and datetime values (ISO 8601 text, as
/// wandb stores them).
fn foreign(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, Unsupported> {
    let module = obj
        .get_type()
        .module()
        .map(|m| m.to_string())
        .unwrap_or_default();
    if module == "numpy" || module.starts_with("numpy.") {
        let plain = obj.call_method0("tolist").map_err(python_error)?;
        // tolist() of a numpy scalar returns a Python scalar; never a numpy object again.
        if plain.get_type().is(obj.get_type()) {
            return Err(unsupported_type(obj));
        }
        return to_value(&plain, depth + 1);
    }
    if module == "datetime" {
        if let Ok(text) = obj.call_method0("isoformat") {
            if let Ok(s) = text.cast::<PyString>() {
                return Ok(Value::Str(s.to_string()));
            }
        }
    }
    Err(unsupported_type(obj))
}

fn unsupported_type(obj: &Bound<'_, PyAny>) -> Unsupported {
    Unsupported::new(format!(
        "{} is not a supported value type (use int, float, bool, str, None, dict, list, \
         tuple, numpy values or datetime)",
        type_name(obj)
    ))
}

fn python_error(err: PyErr) -> Unsupported {
    Unsupported::new(format!("converting it raised {err}"))
}

/// A stored value back as a Python object (summary reads).
pub fn to_python<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::BigInt(digits) => py.get_type::<PyInt>().call1((digits.as_str(),))?,
        Value::Float(f) => PyFloat::new(py, *f).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::List(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item)?)?;
            }
            list.into_any()
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (key, item) in entries {
                dict.set_item(key, to_python(py, item)?)?;
            }
            dict.into_any()
        }
    })
}
