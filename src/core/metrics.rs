//! `define_metric`: which summary a metric keeps (latest value, or min/max/mean/first/last/
//! best) and which step metric its rows carry.

use std::collections::HashMap;

use crate::core::values::{leaf_path, Entry, Tree, Value};
use crate::error::Error;
use crate::log::records::{MetricOptions, MetricRecord, MetricSummary, Row};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Goal {
    Minimize,
    Maximize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricDef {
    /// A metric name, or a glob with `*` (e.g. `train/*`).
    pub name: String,
    pub step_metric: Option<String>,
    pub summary: MetricSummary,
    pub goal: Option<Goal>,
}

impl MetricDef {
    /// Validates `define_metric` arguments; `summary` is a comma-separated list such as
    /// `"min,max"`.
    pub fn parse(
        name: String,
        step_metric: Option<String>,
        summary: Option<&str>,
        goal: Option<&str>,
    ) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::Usage(
                "define_metric: the metric name is empty".into(),
            ));
        }
        let goal = match goal.map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("min" | "minimize") => Some(Goal::Minimize),
            Some("max" | "maximize") => Some(Goal::Maximize),
            Some(other) => {
                return Err(Error::Usage(format!(
                    "define_metric: goal must be 'minimize' or 'maximize', not {other:?}"
                )))
            }
        };
        let mut flags = MetricSummary::default();
        for part in summary
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part {
                "min" => flags.min = true,
                "max" => flags.max = true,
                "mean" => flags.mean = true,
                "first" => flags.first = true,
                "last" => flags.last = true,
                "best" => flags.best = true,
                "none" => flags.none = true,
                other => {
                    return Err(Error::Usage(format!(
                        "define_metric: unknown summary {other:?}; use min, max, mean, first, \
                         last, best or none"
                    )))
                }
            }
        }
        if flags.best && goal.is_none() {
            return Err(Error::Usage(
                "define_metric: summary 'best' needs goal='minimize' or goal='maximize'".into(),
            ));
        }
        Ok(Self {
            name,
            step_metric: step_metric.filter(|s| !s.is_empty()),
            summary: flags,
            goal,
        })
    }

    fn is_glob(&self) -> bool {
        self.name.contains('*')
    }

    pub fn to_record(&self) -> MetricRecord {
        let (name, glob_name) = if self.is_glob() {
            (String::new(), self.name.clone())
        } else {
            (self.name.clone(), String::new())
        };
        MetricRecord {
            name,
            glob_name,
            step_metric: self.step_metric.clone().unwrap_or_default(),
            options: Some(MetricOptions {
                step_sync: self.step_metric.is_some(),
                hidden: false,
                defined: true,
            }),
            summary: (self.summary != MetricSummary::default()).then_some(self.summary),
            goal: match self.goal {
                None => 0,
                Some(Goal::Minimize) => 1,
                Some(Goal::Maximize) => 2,
            },
        }
    }

    /// Keeps aggregates rather than the latest value.
    fn aggregates(&self) -> bool {
        let s = self.summary;
        s.min || s.max || s.mean || s.first || s.last || s.best
    }
}

/// Running aggregates of one metric.
#[derive(Clone, Debug)]
struct Aggregate {
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
    first: Value,
}

#[derive(Default)]
pub struct Metrics {
    defs: Vec<MetricDef>,
    aggregates: HashMap<Vec<String>, Aggregate>,
    /// The last value of each step metric, so rows that lack it can carry it.
    step_values: HashMap<String, Value>,
}

impl Metrics {
    /// A later definition of the same name replaces the earlier one.
    pub fn define(&mut self, def: MetricDef) {
        self.defs.retain(|d| d.name != def.name);
        self.defs.push(def);
    }

    /// The definition for a metric: an exact name first, then the first matching glob.
    fn lookup(&self, name: &str) -> Option<&MetricDef> {
        self.defs
            .iter()
            .find(|d| !d.is_glob() && d.name == name)
            .or_else(|| {
                self.defs
                    .iter()
                    .find(|d| d.is_glob() && glob_match(&d.name, name))
            })
    }

    /// Adds to the row the step metric of each defined metric that the row lacks.
    pub fn complete_row(&mut self, row: &mut Tree) {
        if self.defs.iter().all(|d| d.step_metric.is_none()) {
            return;
        }
        let entries = row.leaves();
        for (path, value) in &entries {
            let name = path.join(".");
            if self
                .defs
                .iter()
                .any(|d| d.step_metric.as_deref() == Some(name.as_str()))
            {
                self.step_values.insert(name, (*value).clone());
            }
        }
        let mut missing: Vec<String> = Vec::new();
        for (path, _) in &entries {
            let Some(step) = self
                .lookup(&path.join("."))
                .and_then(|d| d.step_metric.clone())
            else {
                continue;
            };
            let present = entries.iter().any(|(p, _)| p.join(".") == step);
            if !present && !missing.contains(&step) {
                missing.push(step);
            }
        }
        for step in missing {
            if let Some(value) = self.step_values.get(&step) {
                row.set(&[step], value.clone());
            }
        }
    }

    /// Folds a flushed row into the summary: its values, or what their definitions make of
    /// them (min, max, mean, ...).
    pub fn fold_into_summary(&mut self, row: &Row, summary: &mut Tree) {
        if self.defs.is_empty() {
            // The common case, and the hot path of log(): every value is its own summary.
            let mut near = 0;
            row.visit_items(&mut |parents, key, value| {
                near = summary.set_leaf_near(near, parents, key, value);
            });
            return;
        }
        let mut entries: Vec<Entry> = Vec::new();
        row.visit_items(&mut |parents, key, value| {
            entries.push((leaf_path(parents, key), value.clone()));
        });
        for (path, value) in self.summarize(&entries) {
            summary.set(&path, value);
        }
    }

    /// The summary updates a flushed row causes.
    fn summarize(&mut self, row: &[Entry]) -> Vec<Entry> {
        let mut update = Vec::with_capacity(row.len());
        for (path, value) in row {
            let Some(def) = self.lookup(&path.join(".")).cloned() else {
                update.push((path.clone(), value.clone()));
                continue;
            };
            if def.summary.none {
                continue;
            }
            if !def.aggregates() {
                update.push((path.clone(), value.clone()));
                continue;
            }
            if let Some(summary) = self.aggregate(&def, path, value) {
                update.push((path.clone(), summary));
            }
        }
        update
    }

    fn aggregate(&mut self, def: &MetricDef, path: &[String], value: &Value) -> Option<Value> {
        let number = value.as_f64();
        let agg = self
            .aggregates
            .entry(path.to_vec())
            .or_insert_with(|| Aggregate {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                count: 0,
                first: value.clone(),
            });
        if let Some(x) = number.filter(|x| !x.is_nan()) {
            agg.min = agg.min.min(x);
            agg.max = agg.max.max(x);
            agg.sum += x;
            agg.count += 1;
        }
        let s = def.summary;
        let numeric = agg.count > 0;
        let mut out = Vec::new();
        if s.min && numeric {
            out.push(("min".to_string(), Value::Float(agg.min)));
        }
        if s.max && numeric {
            out.push(("max".to_string(), Value::Float(agg.max)));
        }
        if s.mean && numeric {
            out.push(("mean".to_string(), Value::Float(agg.sum / agg.count as f64)));
        }
        if s.best && numeric {
            let best = match def.goal {
                Some(Goal::Maximize) => agg.max,
                _ => agg.min,
            };
            out.push(("best".to_string(), Value::Float(best)));
        }
        if s.first {
            out.push(("first".to_string(), agg.first.clone()));
        }
        if s.last {
            out.push(("last".to_string(), value.clone()));
        }
        (!out.is_empty()).then_some(Value::Map(out))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, rest)) => {
            let Some(tail) = name.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob_match(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::values::Node;

    fn def(name: &str, step: Option<&str>, summary: Option<&str>, goal: Option<&str>) -> MetricDef {
        MetricDef::parse(name.into(), step.map(String::from), summary, goal).unwrap()
    }

    fn row(values: &[(&str, Value)]) -> Tree {
        let mut tree = Tree::default();
        for (k, v) in values {
            tree.set(&[k.to_string()], v.clone());
        }
        tree
    }

    /// Folds `values` as a row of step 7 and returns the summary without the keys every row
    /// carries.
    fn fold(metrics: &mut Metrics, values: Tree, summary: &mut Tree) -> Value {
        let row = Row {
            step: 7,
            timestamp: Some(1.5),
            runtime: 2.5,
            values,
        };
        metrics.fold_into_summary(&row, summary);
        let mut user = summary.clone();
        for key in ["_step", "_runtime", "_timestamp"] {
            user.remove_key(key);
        }
        user.to_value()
    }

    #[test]
    fn without_definitions_each_value_is_its_summary() {
        let mut metrics = Metrics::default();
        let mut summary = row(&[("old", Value::Int(1)), ("loss", Value::Float(9.0))]);
        let mut values = row(&[("loss", Value::Float(0.5))]);
        values.set(&["nested".into(), "x".into()], Value::Int(2));
        metrics.complete_row(&mut values);
        assert_eq!(
            fold(&mut metrics, values, &mut summary),
            Value::Map(vec![
                ("old".into(), Value::Int(1)),
                ("loss".into(), Value::Float(0.5)),
                (
                    "nested".into(),
                    Value::Map(vec![("x".into(), Value::Int(2))])
                ),
            ])
        );
        for (key, value) in [
            ("_step", Value::Int(7)),
            ("_runtime", Value::Float(2.5)),
            ("_timestamp", Value::Float(1.5)),
        ] {
            assert_eq!(summary.get(&[key.into()]), Some(&Node::Leaf(value)));
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("train/*", "train/loss"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(!glob_match("train/*", "val/loss"));
    }

    #[test]
    fn min_max_mean_and_latest() {
        let mut metrics = Metrics::default();
        metrics.define(def("loss", None, Some("min,max,mean"), None));
        let mut summary = Tree::default();
        let mut folded = Value::Null;
        for x in [3.0, 1.0, 2.0] {
            let mut values = row(&[("loss", Value::Float(x)), ("acc", Value::Int(1))]);
            metrics.complete_row(&mut values);
            folded = fold(&mut metrics, values, &mut summary);
        }
        assert_eq!(
            folded,
            Value::Map(vec![
                (
                    "loss".into(),
                    Value::Map(vec![
                        ("min".into(), Value::Float(1.0)),
                        ("max".into(), Value::Float(3.0)),
                        ("mean".into(), Value::Float(2.0)),
                    ])
                ),
                ("acc".into(), Value::Int(1)),
            ])
        );
    }

    #[test]
    fn summary_none_and_best() {
        let mut metrics = Metrics::default();
        metrics.define(def("hidden", None, Some("none"), None));
        metrics.define(def("acc", None, Some("best"), Some("maximize")));
        let mut summary = Tree::default();
        let values = row(&[("hidden", Value::Int(1)), ("acc", Value::Float(0.5))]);
        assert_eq!(
            fold(&mut metrics, values, &mut summary),
            Value::Map(vec![(
                "acc".into(),
                Value::Map(vec![("best".into(), Value::Float(0.5))])
            )])
        );
        assert!(MetricDef::parse("x".into(), None, Some("best"), None).is_err());
        assert!(MetricDef::parse("x".into(), None, Some("median"), None).is_err());
        assert!(MetricDef::parse("x".into(), None, None, Some("up")).is_err());
    }

    #[test]
    fn rows_carry_their_step_metric() {
        let mut metrics = Metrics::default();
        metrics.define(def("val/*", Some("epoch"), None, None));
        metrics.complete_row(&mut row(&[("epoch", Value::Int(4))]));
        let mut values = row(&[("val/loss", Value::Float(0.1))]);
        metrics.complete_row(&mut values);
        assert_eq!(
            values.get(&["epoch".to_string()]).unwrap().to_value(),
            Value::Int(4)
        );
        let record = metrics.defs[0].to_record();
        assert_eq!(record.glob_name, "val/*");
        assert!(record.options.unwrap().step_sync);
    }
}
