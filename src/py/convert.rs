//! Python objects to [`Value`]s and back. Exact built-in types are tried first (the common,
//! fast path); numpy values, datetimes and our media are recognised by their type's module,
//! so numpy is never imported here.

use std::cell::OnceCell;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::core::values::{Key, MediaValue, Tree, Value};
use crate::error::Error;
use crate::media::file::FileKind;
use crate::media::histogram::{array_stats, AUTO_BINS};
use crate::media::table::Cell;
use crate::media::Media;
use crate::py::arrays::{self, is_array, read_array};
use crate::py::media_core::MediaCore;

/// Where converted values go, which decides how arrays and media are logged.
pub enum Target<'a> {
    /// A history row: media files are named by the step, long arrays become histograms.
    History(&'a dyn Fn() -> i64),
    /// The summary: media files are named `summary`, long arrays become statistics.
    Summary,
    /// The config: arrays become lists, media are refused.
    Config,
}

/// Images of a list logged under one key, as wandb keeps them.
const MAX_IMAGES_PER_KEY: usize = 108;

/// numpy arrays longer than this are summarised (history, summary) rather than stored whole.
const ARRAY_AS_LIST_MAX: usize = 32;

struct Context<'a> {
    target: Target<'a>,
    /// The step (or `summary`) media files are named by, read once when first needed.
    namespace: OnceCell<String>,
}

impl Context<'_> {
    fn new(target: Target<'_>) -> Context<'_> {
        Context {
            target,
            namespace: OnceCell::new(),
        }
    }

    fn namespace(&self) -> String {
        self.namespace
            .get_or_init(|| match &self.target {
                Target::History(step) => step().to_string(),
                _ => "summary".to_string(),
            })
            .clone()
    }
}

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
    target: Target<'_>,
) -> Result<Vec<(String, Value)>, Error> {
    let context = Context::new(target);
    as_dict(data, action)?
        .iter()
        .map(|(key, value)| {
            let (key, value) = dict_item(&key, &value, action, &context)?;
            Ok((key.to_owned(), value))
        })
        .collect()
}

/// The values of one `log()` call, converted straight into a row's tree; `step` tells the
/// step the row's media files are named by.
/// Custom charts (`wandb_nexus.plot`) among them are logged as wandb logs them: their table
/// under `<key>_table`, and their panel config returned with their key, for the run's config.
pub fn row_values(
    data: &Bound<'_, PyAny>,
    step: &dyn Fn() -> i64,
    charts: &mut Vec<(String, Value)>,
) -> Result<Tree, Error> {
    let dict = as_dict(data, "log")?;
    let context = Context::new(Target::History(step));
    let mut values = Tree::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let (key, value) = match chart(&key, &value)? {
            Some((chart_key, table, config)) => {
                let config = to_value(&config, 1, "", &Context::new(Target::Config))
                    .map_err(|e| e.into_error("log", &chart_key))?;
                charts.push((chart_key, config));
                let table_key = key_text(&table.0)?;
                dict_item(&table.0, &table.1, "log", &context).map(|(_, v)| (table_key, v))?
            }
            None => dict_item(&key, &value, "log", &context).map(|(k, v)| (k.to_owned(), v))?,
        };
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

type Chart<'py> = (
    String,
    (Bound<'py, PyAny>, Bound<'py, PyAny>),
    Bound<'py, PyAny>,
);

/// A custom chart's key, its table (with the key it goes under) and its panel config.
fn chart<'py>(
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
) -> Result<Option<Chart<'py>>, Error> {
    if !is_ours(value) || !value.hasattr("_chart")? {
        return Ok(None);
    }
    let key = key_text(key)?;
    let (table_key, table, config): (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>) =
        value.call_method1("_chart", (&key,))?.extract()?;
    Ok(Some((key, (table_key, table), config)))
}

fn key_text(key: &Bound<'_, PyAny>) -> Result<String, Error> {
    dict_key(key)
        .map(str::to_owned)
        .map_err(|e| Error::UnsupportedValue {
            action: "log",
            key: String::new(),
            reason: e.reason,
        })
}

/// One item of a dict of top-level keys: its key as text and its value converted.
fn dict_item<'a>(
    key: &'a Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    action: &'static str,
    context: &Context<'_>,
) -> Result<(&'a str, Value), Error> {
    let key = dict_key(key).map_err(|e| Error::UnsupportedValue {
        action,
        key: String::new(),
        reason: e.reason,
    })?;
    let value = to_value(value, 1, key, context).map_err(|e| e.into_error(action, key))?;
    Ok((key, value))
}

/// A table cell: a plain value, or an image (HTML, audio) in the cell.
pub fn table_cell(obj: &Bound<'_, PyAny>) -> Result<Cell, Error> {
    if let Some(core) = media_core(obj) {
        let core = core.map_err(|e| e.into_error("add to a table", ""))?;
        if let Ok(core) = core.cast::<MediaCore>() {
            return match &core.get().media {
                Media::File(file) => Ok(Cell::Media(file.clone())),
                _ => Err(Error::InvalidValue(
                    "a table cell can hold an image, HTML or audio, not a table".into(),
                )),
            };
        }
        return table_cell(&core);
    }
    let context = Context::new(Target::Config);
    to_value(obj, 1, "", &context)
        .map(Cell::Value)
        .map_err(|e| e.into_error("add to a table", ""))
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

fn to_value(
    obj: &Bound<'_, PyAny>,
    depth: usize,
    key: &str,
    context: &Context<'_>,
) -> Result<Value, Unsupported> {
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
            let value =
                to_value(&value, depth + 1, &key, context).map_err(|e| e.under(key.clone()))?;
            entries.push((key, value));
        }
        return Ok(Value::Map(entries));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return sequence(list.iter(), depth, key, context);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return sequence(tuple.iter(), depth, key, context);
    }
    foreign(obj, depth, key, context)
}

fn sequence<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
    key: &str,
    context: &Context<'_>,
) -> Result<Value, Unsupported> {
    let items = items
        .enumerate()
        .map(|(i, item)| {
            to_value(&item, depth + 1, key, context).map_err(|e| e.under(format!("[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(grouped(&items, key, context).unwrap_or(Value::List(items)))
}

/// A list of images (or of HTML pages) becomes one grouped value, as in wandb.
fn grouped(items: &[Value], key: &str, context: &Context<'_>) -> Option<Value> {
    let mut files = Vec::with_capacity(items.len());
    for item in items {
        let Value::Media(media) = item else {
            return None;
        };
        match media.payload.downcast_ref::<Media>()? {
            Media::File(file) if file.kind != FileKind::Audio => files.push(file.clone()),
            _ => return None,
        }
    }
    let kind = files.first()?.kind;
    if files.iter().any(|f| f.kind != kind) {
        return None;
    }
    if kind == FileKind::Image {
        // wandb keeps the first 108 images of a list; the UI shows no more.
        files.truncate(MAX_IMAGES_PER_KEY);
    }
    Some(media_value(Media::Files(files), key, context))
}

fn media_value(media: Media, key: &str, context: &Context<'_>) -> Value {
    Value::Media(Arc::new(MediaValue::new(
        key.to_string(),
        context.namespace(),
        media.pending_bytes(),
        Box::new(media),
    )))
}

/// Whether `obj` is of a class of wandb_nexus (a data type or a chart).
fn is_ours(obj: &Bound<'_, PyAny>) -> bool {
    obj.get_type()
        .module()
        .is_ok_and(|m| m.to_str().is_ok_and(|m| m.starts_with("wandb_nexus.")))
}

/// Our data types hand over what the core logs through `_to_core()`: a native media value,
/// or plain data (a histogram's JSON).
fn media_core<'py>(obj: &Bound<'py, PyAny>) -> Option<Result<Bound<'py, PyAny>, Unsupported>> {
    if !is_ours(obj) {
        return None;
    }
    obj.hasattr("_to_core")
        .ok()?
        .then(|| obj.call_method0("_to_core").map_err(python_error))
}

/// Our media, numpy scalars and arrays (through `tolist()`, long arrays summarised as wandb
/// does) and torch tensors (as numpy arrays), and datetime values (ISO 8601 text, as wandb
/// stores them).
fn foreign(
    obj: &Bound<'_, PyAny>,
    depth: usize,
    key: &str,
    context: &Context<'_>,
) -> Result<Value, Unsupported> {
    if let Some(core) = media_core(obj) {
        let core = core?;
        let Ok(native) = core.cast::<MediaCore>() else {
            return to_value(&core, depth + 1, key, context);
        };
        if matches!(context.target, Target::Config) {
            return Err(Unsupported::new(format!(
                "{} cannot be stored in the config (log it instead)",
                type_name(obj)
            )));
        }
        return Ok(media_value(native.get().media.clone(), key, context));
    }
    let module = obj
        .get_type()
        .module()
        .map(|m| m.to_string())
        .unwrap_or_default();
    if module.split('.').next() == Some("pandas") && type_name(obj) == "DataFrame" {
        // A DataFrame is logged as a Table of its columns, as in wandb.
        let table = obj
            .py()
            .import("wandb_nexus._media")
            .and_then(|media| media.getattr("Table"))
            .and_then(|table| table.call((), Some(&[("dataframe", obj)].into_py_dict(obj.py())?)))
            .map_err(python_error)?;
        return to_value(&table, depth + 1, key, context);
    }
    if module.split('.').next() == Some("torch") && obj.hasattr("numpy").unwrap_or(false) {
        // A tensor is logged as its numpy array, as wandb logs it.
        let array = obj
            .call_method0("detach")
            .and_then(|t| t.call_method0("cpu"))
            .and_then(|t| t.call_method0("numpy"))
            .map_err(python_error)?;
        return to_value(&array, depth + 1, key, context);
    }
    if module == "numpy" || module.starts_with("numpy.") {
        if let Some(summarised) = long_array(obj, context)? {
            return Ok(summarised);
        }
        let plain = obj.call_method0("tolist").map_err(python_error)?;
        // tolist() of a numpy scalar returns a Python scalar; never a numpy object again.
        if plain.get_type().is(obj.get_type()) {
            return Err(unsupported_type(obj));
        }
        return to_value(&plain, depth + 1, key, context);
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

/// wandb's rule for a numpy array of more than 32 elements: a 32-bin histogram in history,
/// statistics in the summary. None when the array is kept as a list.
fn long_array(obj: &Bound<'_, PyAny>, context: &Context<'_>) -> Result<Option<Value>, Unsupported> {
    if matches!(context.target, Target::Config) || !is_array(obj) {
        return Ok(None);
    }
    let size: usize = obj.getattr("size").and_then(|s| s.extract()).unwrap_or(0);
    if size <= ARRAY_AS_LIST_MAX {
        return Ok(None);
    }
    let unsupported = |e: Error| Unsupported::new(e.to_string());
    Ok(Some(match context.target {
        Target::History(_) => arrays::histogram(obj.py(), obj, AUTO_BINS)
            .map_err(unsupported)?
            .to_value(),
        _ => {
            let array = read_array(obj).map_err(unsupported)?;
            array_stats(&array.to_f64(), !array.dtype.is_float())
        }
    }))
}

fn unsupported_type(obj: &Bound<'_, PyAny>) -> Unsupported {
    Unsupported::new(format!(
        "{} is not a supported value type (use int, float, bool, str, None, dict, list, \
         tuple, numpy values, datetime or wandb_nexus media such as Image and Table)",
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
        Value::Media(media) => to_python(py, &py.detach(|| media.json()))?,
    })
}
