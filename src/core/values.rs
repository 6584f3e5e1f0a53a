//! Logged values as plain Rust data, their JSON encoding as wandb writes it (bare `NaN`,
//! `Infinity`, `-Infinity` tokens), and the path tree that holds history rows, the summary
//! and the config.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rustc_hash::FxBuildHasher;

/// A value converted from Python, owned by Rust.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits, kept exact as its decimal digits.
    BigInt(String),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// An image, table, ... whose JSON the writer fills in once it has stored its files.
    Media(Arc<MediaValue>),
}

/// A media value as logged: the writer stores its files and then fills in its JSON, so the
/// caller never waits for encoding or disk.
pub struct MediaValue {
    /// The leaf key and the step (or `summary`) it was logged at: they name its files.
    pub key: String,
    pub namespace: String,
    /// The bytes it holds until it is stored: queued media weigh on the writer's backlog.
    pub bytes: usize,
    /// The media itself (a `media::Media`); opaque here, so values depend on nothing.
    pub payload: Box<dyn Any + Send + Sync>,
    json: Mutex<Option<Value>>,
    stored: Condvar,
}

/// How long a reader waits for the writer to store a media value before giving up on it.
const MEDIA_WAIT: Duration = Duration::from_secs(60);

impl MediaValue {
    pub fn new(
        key: String,
        namespace: String,
        bytes: usize,
        payload: Box<dyn Any + Send + Sync>,
    ) -> Self {
        Self {
            key,
            namespace,
            bytes,
            payload,
            json: Mutex::new(None),
            stored: Condvar::new(),
        }
    }

    /// The JSON once stored, if it is.
    pub fn stored_json(&self) -> Option<Value> {
        self.json
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_json(&self, json: Value) {
        *self.json.lock().unwrap_or_else(PoisonError::into_inner) = Some(json);
        self.stored.notify_all();
    }

    /// The JSON, waiting for the writer to store the value; null if it never does.
    pub fn json(&self) -> Value {
        let guard = self.json.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .stored
            .wait_timeout_while(guard, MEDIA_WAIT, |json| json.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        guard.clone().unwrap_or(Value::Null)
    }
}

impl std::fmt::Debug for MediaValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaValue({:?} at {})", self.key, self.namespace)
    }
}

impl PartialEq for MediaValue {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Value {
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
            Value::BigInt(digits) => out.push_str(digits),
            Value::Float(f) => write_float(*f, out),
            Value::Str(s) => write_json_string(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Map(entries) => write_json_object(entries.iter().map(|(k, v)| (k, v)), out),
            Value::Media(media) => media.json().write_json(out),
        }
    }

    /// Whether the value holds media anywhere.
    pub fn has_media(&self) -> bool {
        match self {
            Value::Media(_) => true,
            Value::List(items) => items.iter().any(Value::has_media),
            Value::Map(entries) => entries.iter().any(|(_, v)| v.has_media()),
            _ => false,
        }
    }

    /// The value as f64 when it is a number, for min/max/mean summaries.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl Value {
    /// A value of an API answer (null if our reader would not take it back).
    pub fn from_json(json: &serde_json::Value) -> Value {
        Value::parse_json(&json.to_string()).unwrap_or(Value::Null)
    }

    /// Parses JSON, including the bare `NaN`, `Infinity` and `-Infinity` tokens wandb writes.
    pub fn parse_json(text: &str) -> Result<Value, String> {
        let mut parser = JsonParser {
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let value = parser.value()?;
        parser.skip_space();
        if parser.pos != parser.bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }
}

/// Deeper documents are refused rather than risking the stack.
const MAX_JSON_DEPTH: usize = 512;

struct JsonParser<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn error(&self, what: &str) -> String {
        format!("invalid JSON at byte {}: {what}", self.pos)
    }

    fn skip_space(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_space();
        let Some(&byte) = self.bytes.get(self.pos) else {
            return Err(self.error("unexpected end"));
        };
        match byte {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_JSON_DEPTH {
                    return Err(self.error("nested too deeply"));
                }
                let value = if byte == b'{' {
                    self.object()
                } else {
                    self.array()
                };
                self.depth -= 1;
                value
            }
            b'"' => self.string().map(Value::Str),
            _ if self.eat("null") => Ok(Value::Null),
            _ if self.eat("true") => Ok(Value::Bool(true)),
            _ if self.eat("false") => Ok(Value::Bool(false)),
            _ if self.eat("NaN") => Ok(Value::Float(f64::NAN)),
            _ if self.eat("Infinity") => Ok(Value::Float(f64::INFINITY)),
            _ if self.eat("-Infinity") => Ok(Value::Float(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.error("unexpected character")),
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_space();
        if self.eat("}") {
            return Ok(Value::Map(entries));
        }
        loop {
            self.skip_space();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.error("expected a key"));
            }
            let key = self.string()?;
            self.skip_space();
            if !self.eat(":") {
                return Err(self.error("expected ':'"));
            }
            entries.push((key, self.value()?));
            self.skip_space();
            if self.eat("}") {
                return Ok(Value::Map(entries));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or '}'"));
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.eat("]") {
            return Ok(Value::List(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_space();
            if self.eat("]") {
                return Ok(Value::List(items));
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ']'"));
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while matches!(
            self.bytes.get(self.pos),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).expect("ASCII digits");
        if !text.contains(['.', 'e', 'E']) {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Int(i));
            }
            let digits = text.strip_prefix('-').unwrap_or(text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(Value::BigInt(text.to_string()));
            }
        }
        text.parse::<f64>()
            .map(Value::Float)
            .map_err(|_| self.error("bad number"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while !matches!(self.bytes.get(self.pos), None | Some(b'"' | b'\\')) {
                self.pos += 1;
            }
            out.push_str(
                std::str::from_utf8(&self.bytes[start..self.pos])
                    .map_err(|_| self.error("invalid UTF-8"))?,
            );
            match self.bytes.get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.pos += 1;
                    let escape = *self
                        .bytes
                        .get(self.pos)
                        .ok_or_else(|| self.error("bad escape"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("bad escape")),
                    }
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.pos += 4;
        Ok(hex)
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            // A high surrogate pairs with a low one right after it; anything else is left to
            // be read on its own.
            let after_first = self.pos;
            if self.eat("\\u") {
                let second = self.hex4()?;
                if (0xDC00..0xE000).contains(&second) {
                    let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    return Ok(char::from_u32(code).expect("a surrogate pair is a character"));
                }
                self.pos = after_first;
            }
        }
        // A lone surrogate is no character: U+FFFD stands for it.
        Ok(char::from_u32(first).unwrap_or('\u{FFFD}'))
    }
}

/// Writes `value` as block-style YAML; `value` should be a map (the document's top level).
pub fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Map(entries) if !entries.is_empty() => {
            for (key, value) in entries {
                push_indent(indent, out);
                write_yaml_key(key, out);
                out.push(':');
                write_yaml_node(value, indent + 4, out);
            }
        }
        Value::List(items) if !items.is_empty() => {
            for item in items {
                push_indent(indent, out);
                out.push('-');
                write_yaml_node(item, indent + 4, out);
            }
        }
        scalar => {
            write_yaml_scalar(scalar, out);
            out.push('\n');
        }
    }
}

/// The part after `key:` or `-`: a scalar on the same line, or a block on the next ones.
fn write_yaml_node(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Map(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(value, indent, out);
        }
        Value::List(l) if !l.is_empty() => {
            out.push('\n');
            write_yaml(value, indent, out);
        }
        scalar => {
            out.push(' ');
            write_yaml(scalar, indent, out);
        }
    }
}

fn push_indent(indent: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_yaml_key(key: &str, out: &mut String) {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        out.push_str(key);
    } else {
        write_json_string(key, out);
    }
}

fn write_yaml_scalar(value: &Value, out: &mut String) {
    match value {
        Value::Float(f) if f.is_nan() => out.push_str(".nan"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { ".inf" } else { "-.inf" }),
        Value::Float(f) => {
            // YAML 1.1 readers (PyYAML) want a dot and a signed exponent in floats.
            let text = zmij::Buffer::new().format_finite(*f).to_string();
            let (mantissa, exponent) = match text.split_once('e') {
                Some((m, e)) => (m.to_string(), Some(e.to_string())),
                None => (text, None),
            };
            out.push_str(&mantissa);
            if !mantissa.contains('.') {
                out.push_str(".0");
            }
            if let Some(exponent) = exponent {
                out.push('e');
                if !exponent.starts_with(['-', '+']) {
                    out.push('+');
                }
                out.push_str(&exponent);
            }
        }
        Value::Map(_) => out.push_str("{}"),
        Value::List(_) => out.push_str("[]"),
        other => other.write_json(out),
    }
}

fn write_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(zmij::Buffer::new().format_finite(f));
    }
}

pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_json_object<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    out.push('{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(key, out);
        out.push(':');
        value.write_json(out);
    }
    out.push('}');
}

/// The full path of a leaf that `visit_leaves` hands over with its parents' keys.
pub fn leaf_path(parents: &[&str], key: &str) -> Vec<String> {
    parents
        .iter()
        .chain([&key])
        .map(|p| p.to_string())
        .collect()
}

/// A tree's key: metric names are short, and a short key is held inline, with no allocation
/// to make in log() or to free in the writer.
pub type Key = compact_str::CompactString;

/// A path in a tree of keys, with the value there.
pub type Entry = (Vec<String>, Value);

/// A node of a [`Tree`]: a value, or a subtree of named children.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Leaf(Value),
    /// Boxed: nested keys are rare, and an unboxed tree would make every slot of every row
    /// larger.
    Branch(Box<Tree>),
}

impl Node {
    pub fn to_value(&self) -> Value {
        match self {
            Node::Leaf(value) => value.clone(),
            Node::Branch(tree) => tree.to_value(),
        }
    }

    /// Makes this node a leaf holding a copy of `value`. A number replaces a number in place
    /// (the summary fold of every row): nothing to drop, nothing to allocate.
    fn set_leaf(&mut self, value: &Value) {
        match (self, value) {
            (Node::Leaf(Value::Float(old)), Value::Float(new)) => *old = *new,
            (Node::Leaf(Value::Int(old)), Value::Int(new)) => *old = *new,
            (node, value) => *node = Node::Leaf(value.clone()),
        }
    }
}

/// Nested keys with values at the leaves, in insertion order. Keys are hashed with FxHash:
/// they are the program's own metric names, and SipHash's DoS resistance cost log() more
/// than any other single step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tree(Entries);

impl Tree {
    /// An empty tree with room for `keys` top-level keys (a row like the last one).
    pub fn with_capacity(keys: usize) -> Self {
        Self(Entries::with_capacity(keys))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.0.keys()
    }

    pub fn get(&self, path: &[String]) -> Option<&Node> {
        let (first, rest) = path.split_first()?;
        let node = self.0.get(first.as_str())?;
        match (rest.is_empty(), node) {
            (true, node) => Some(node),
            (false, Node::Branch(tree)) => tree.get(rest),
            (false, Node::Leaf(_)) => None,
        }
    }

    /// The subtree at `path`, created (replacing any leaf in the way) when missing.
    fn branch_mut(&mut self, path: &[String]) -> &mut Tree {
        let mut tree = self;
        for key in path {
            tree = tree.child_branch(key);
        }
        tree
    }

    /// The branch at `key`, made (or made from a leaf) if need be; the key is copied only
    /// when new.
    fn child_branch(&mut self, key: &str) -> &mut Tree {
        if self.0.get(key).is_none() {
            self.0.insert(Key::from(key), Node::Branch(Box::default()));
        }
        let node = self.0.get_mut(key).expect("inserted just above");
        if let Node::Leaf(_) = node {
            *node = Node::Branch(Box::default());
        }
        match node {
            Node::Branch(tree) => tree,
            Node::Leaf(_) => unreachable!("replaced just above"),
        }
    }

    /// `set` of a copy of `value` at the path `parents` + `key`, for the leaves of one row
    /// after another (the summary fold): rows repeat their keys in the same order, so a
    /// top-level key is looked for first at position `near`. Returns where to look for the
    /// next key.
    pub fn set_leaf_near(
        &mut self,
        near: usize,
        parents: &[&str],
        key: &str,
        value: &Value,
    ) -> usize {
        if parents.is_empty() {
            return self.0.set_leaf_near(near, key, value) + 1;
        }
        let mut branch = self;
        for parent in parents {
            branch = branch.child_branch(parent);
        }
        // Nested keys are rare: searched for without a hint.
        branch.0.set_leaf_near(usize::MAX, key, value);
        near
    }

    /// Stores `value` as one leaf at `path`, replacing whatever was there.
    pub fn set(&mut self, path: &[String], value: Value) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let branch = &mut self.branch_mut(parents).0;
        // Most sets replace a value (a summary key, a row's step): no key to copy then.
        match branch.get_mut(last.as_str()) {
            Some(node) => *node = Node::Leaf(value),
            None => {
                branch.insert(Key::from(last.as_str()), Node::Leaf(value));
            }
        }
    }

    /// Stores `value` at `path`, merging a non-empty map key by key into what is there, so
    /// that other keys under the path survive.
    pub fn merge(&mut self, path: &[String], value: Value) {
        match value {
            Value::Map(entries) if !entries.is_empty() => {
                let mut child = path.to_vec();
                for (key, value) in entries {
                    child.push(key);
                    self.merge(&child, value);
                    child.pop();
                }
            }
            value => self.set(path, value),
        }
    }

    /// `merge` of one top-level key, which is moved in rather than copied.
    pub fn merge_key(&mut self, key: Key, value: Value) {
        match value {
            Value::Map(ref entries) if !entries.is_empty() => {
                self.merge(&[key.into_string()], value)
            }
            value => {
                self.0.insert(key, Node::Leaf(value));
            }
        }
    }

    /// `merge_key` of a key that is not in the tree (the keys of one dict): no search.
    pub fn merge_new_key(&mut self, key: Key, value: Value) {
        match value {
            Value::Map(ref entries) if !entries.is_empty() => self.merge_key(key, value),
            value => self.0.push(Slot {
                hash: key_hash(&key),
                key,
                node: Node::Leaf(value),
            }),
        }
    }

    /// Merges `other` into this tree as `merge` would its values one by one: what it holds
    /// replaces what is here, except that branches merge key by key.
    pub fn merge_tree(&mut self, other: Tree) {
        for slot in other.0.list {
            match slot.node {
                Node::Branch(tree) => self.child_branch(&slot.key).merge_tree(*tree),
                leaf => self.0.insert(slot.key, leaf),
            }
        }
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.0.get(key).is_some()
    }

    /// Removes a top-level key; true if it was there.
    pub fn remove_key(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    /// Removes the node at `path`; true if there was one.
    pub fn remove(&mut self, path: &[String]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let parent = if parents.is_empty() {
            Some(self)
        } else {
            match self.get_mut(parents) {
                Some(Node::Branch(tree)) => Some(&mut **tree),
                _ => None,
            }
        };
        parent.is_some_and(|tree| tree.remove_key(last))
    }

    fn get_mut(&mut self, path: &[String]) -> Option<&mut Node> {
        let (first, rest) = path.split_first()?;
        let node = self.0.get_mut(first.as_str())?;
        if rest.is_empty() {
            return Some(node);
        }
        match node {
            Node::Branch(tree) => tree.get_mut(rest),
            Node::Leaf(_) => None,
        }
    }

    /// Every leaf with its full path, depth first in insertion order.
    pub fn leaves(&self) -> Vec<(Vec<String>, &Value)> {
        let mut out = Vec::new();
        self.visit_leaves(&mut Vec::new(), &mut |parents, key, value| {
            out.push((leaf_path(parents, key), value));
        });
        out
    }

    /// The bytes held by media values at the top level (a list of images is one value).
    pub fn media_bytes(&self) -> usize {
        self.0
            .list
            .iter()
            .map(|slot| match &slot.node {
                Node::Leaf(Value::Media(media)) => media.bytes,
                _ => 0,
            })
            .sum()
    }

    /// Hands each leaf's value to `leaf` to change in place, in order.
    pub fn visit_values_mut(&mut self, leaf: &mut impl FnMut(&mut Value)) {
        for slot in self.0.list.iter_mut() {
            match &mut slot.node {
                Node::Leaf(value) => leaf(value),
                Node::Branch(tree) => tree.visit_values_mut(leaf),
            }
        }
    }

    /// Hands each leaf to `leaf` with the keys of the branches above it (empty for a
    /// top-level key) and its own key, in order, copying nothing.
    pub fn visit_leaves<'a>(
        &'a self,
        parents: &mut Vec<&'a str>,
        leaf: &mut impl FnMut(&[&'a str], &'a str, &'a Value),
    ) {
        for (key, node) in self.0.iter() {
            match node {
                Node::Leaf(value) => leaf(parents, key.as_str(), value),
                Node::Branch(tree) => {
                    parents.push(key.as_str());
                    tree.visit_leaves(parents, leaf);
                    parents.pop();
                }
            }
        }
    }

    pub fn to_value(&self) -> Value {
        Value::Map(self.to_entries())
    }

    /// The top-level keys with their values.
    pub fn to_entries(&self) -> Vec<(String, Value)> {
        self.0
            .iter()
            .map(|(key, node)| (key.to_string(), node.to_value()))
            .collect()
    }

    pub fn to_json(&self) -> String {
        self.to_value().to_json()
    }
}

/// A tree's keys and nodes in insertion order. Most trees are small (a row of a few metrics,
/// a summary of a few more): those are a list searched by each key's hash, which costs less
/// than a hash table's probing and a string comparison per entry. A longer list gets an
/// index from key to position.
#[derive(Clone, Debug, Default)]
struct Entries {
    list: Vec<Slot>,
    index: Option<HashMap<Key, usize, FxBuildHasher>>,
}

#[derive(Clone, Debug, PartialEq)]
struct Slot {
    hash: u64,
    key: Key,
    node: Node,
}

/// The longest list searched without an index.
const UNINDEXED_MAX: usize = 16;

fn key_hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl Entries {
    fn with_capacity(keys: usize) -> Self {
        Self {
            list: Vec::with_capacity(keys),
            index: None,
        }
    }

    fn len(&self) -> usize {
        self.list.len()
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.list.iter().map(|slot| (&slot.key, &slot.node))
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.list.iter().map(|slot| &slot.key)
    }

    fn position(&self, key: &str, hash: u64) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self
                .list
                .iter()
                .position(|slot| slot.hash == hash && slot.key == key),
        }
    }

    fn get(&self, key: &str) -> Option<&Node> {
        self.position(key, key_hash(key))
            .map(|at| &self.list[at].node)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.position(key, key_hash(key))
            .map(|at| &mut self.list[at].node)
    }

    /// Replaces the node of a key that is there (keeping its place), or appends it.
    fn insert(&mut self, key: Key, node: Node) {
        let hash = key_hash(&key);
        match self.position(&key, hash) {
            Some(at) => self.list[at].node = node,
            None => self.push(Slot { hash, key, node }),
        }
    }

    /// Sets `key` to a leaf holding a copy of `value`, looking first at position `at`;
    /// returns where the key is.
    fn set_leaf_near(&mut self, at: usize, key: &str, value: &Value) -> usize {
        let hash = key_hash(key);
        let found = match self.list.get(at) {
            Some(slot) if slot.hash == hash && slot.key == key => Some(at),
            _ => self.position(key, hash),
        };
        match found {
            Some(at) => {
                self.list[at].node.set_leaf(value);
                at
            }
            None => {
                self.push(Slot {
                    hash,
                    key: Key::from(key),
                    node: Node::Leaf(value.clone()),
                });
                self.list.len() - 1
            }
        }
    }

    fn push(&mut self, slot: Slot) {
        if let Some(index) = &mut self.index {
            index.insert(slot.key.clone(), self.list.len());
        }
        self.list.push(slot);
        if self.index.is_none() && self.list.len() > UNINDEXED_MAX {
            self.reindex();
        }
    }

    fn remove(&mut self, key: &str) -> Option<Node> {
        let at = self.position(key, key_hash(key))?;
        let slot = self.list.remove(at);
        if self.index.is_some() {
            self.reindex();
        }
        Some(slot.node)
    }

    fn reindex(&mut self) {
        let index = self
            .list
            .iter()
            .enumerate()
            .map(|(at, slot)| (slot.key.clone(), at))
            .collect();
        self.index = Some(index);
    }
}

impl PartialEq for Entries {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries behave as an insertion-ordered map whether or not they are indexed: checked
    /// against a plain list over inserts (plain and hinted), replacements and removals that cross
    /// the threshold.
    #[test]
    fn entries_are_an_ordered_map_on_both_sides_of_the_index_threshold() {
        let mut entries = Entries::default();
        let mut model: Vec<(String, i64)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for op in 0..4000_i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let key = format!("k{}", seed % 40);
            // Mostly inserts, so that the list grows past the threshold and back.
            if seed % 5 == 0 {
                let removed = entries.remove(&key).is_some();
                let at = model.iter().position(|(k, _)| *k == key);
                assert_eq!(removed, at.is_some());
                if let Some(at) = at {
                    model.remove(at);
                }
            } else {
                if seed % 3 == 0 {
                    entries.insert(Key::from(key.as_str()), Node::Leaf(Value::Int(op)));
                } else {
                    // The same through a search that starts at an arbitrary (maybe wrong) place.
                    let at = entries.set_leaf_near((seed % 50) as usize, &key, &Value::Int(op));
                    assert_eq!(entries.list[at].key, key);
                }
                match model.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = op,
                    None => model.push((key, op)),
                }
            }
            let listed: Vec<(String, i64)> = entries
                .iter()
                .map(|(k, node)| match node {
                    Node::Leaf(Value::Int(v)) => (k.to_string(), *v),
                    other => panic!("unexpected node {other:?}"),
                })
                .collect();
            assert_eq!(listed, model);
            for (k, v) in &model {
                assert_eq!(entries.get(k), Some(&Node::Leaf(Value::Int(*v))));
            }
            assert_eq!(entries.get("absent"), None);
        }
    }

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn json_of_scalars_and_containers() {
        let value = Value::Map(vec![
            ("a".into(), Value::Int(-3)),
            ("b".into(), Value::Float(1.5)),
            ("c".into(), Value::Float(f64::NAN)),
            ("d".into(), Value::Float(f64::INFINITY)),
            ("e".into(), Value::Float(f64::NEG_INFINITY)),
            (
                "f".into(),
                Value::List(vec![Value::Null, Value::Bool(true)]),
            ),
            (
                "g".into(),
                Value::BigInt("123456789012345678901234567890".into()),
            ),
            ("h".into(), Value::Float(1e21)),
        ]);
        assert_eq!(
            value.to_json(),
            r#"{"a":-3,"b":1.5,"c":NaN,"d":Infinity,"e":-Infinity,"f":[null,true],"g":123456789012345678901234567890,"h":1e+21}"#
        );
    }

    #[test]
    fn yaml_blocks_and_scalars() {
        let value = Value::Map(vec![
            (
                "lr".into(),
                Value::Map(vec![("value".into(), Value::Float(0.1))]),
            ),
            (
                "extra".into(),
                Value::List(vec![
                    Value::Int(1),
                    Value::Map(vec![("a b".into(), Value::Float(f64::NAN))]),
                    Value::List(vec![]),
                ]),
            ),
            ("big".into(), Value::Float(1e21)),
            ("yes".into(), Value::Str("x\"y".into())),
            ("empty".into(), Value::Map(vec![])),
        ]);
        let mut out = String::new();
        write_yaml(&value, 0, &mut out);
        assert_eq!(
            out,
            "lr:\n    value: 0.1\nextra:\n    - 1\n    -\n        \"a b\": .nan\n    - []\n\
             big: 1.0e+21\n\"yes\": \"x\\\"y\"\nempty: {}\n"
        );
    }

    #[test]
    fn parse_round_trips_extended_json() {
        let text = r#"{"a":-3,"b":1.5,"c":NaN,"d":Infinity,"e":-Infinity,"f":[null,true,false],"g":123456789012345678901234567890,"h":"q\"\u00e9\ud83d\ude00\n","i":{}}"#;
        let value = Value::parse_json(text).unwrap();
        let Value::Map(entries) = &value else {
            panic!("not a map")
        };
        assert!(matches!(entries[2].1, Value::Float(f) if f.is_nan()));
        assert_eq!(entries[7].1, Value::Str("q\"é😀\n".into()));
        let again = Value::parse_json(&value.to_json()).unwrap();
        assert_eq!(again.to_json(), value.to_json());
        assert_eq!(
            Value::parse_json(" [1 , 2e3] ").unwrap().to_json(),
            "[1,2000.0]"
        );
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_lose_no_neighbour() {
        for (text, expected) in [
            (r#""\ud800\u0041""#, "\u{FFFD}A"),
            (r#""\ud800\ud83d\ude00""#, "\u{FFFD}😀"),
            (r#""\udc00x""#, "\u{FFFD}x"),
            (r#""\ud800""#, "\u{FFFD}"),
        ] {
            assert_eq!(
                Value::parse_json(text),
                Ok(Value::Str(expected.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_rejects_malformed_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "nul",
            "1 2",
            "\"abc",
            "[\"\\x\"]",
        ] {
            assert!(Value::parse_json(bad).is_err(), "{bad:?} accepted");
        }
        let deep = "[".repeat(600) + &"]".repeat(600);
        assert!(Value::parse_json(&deep).is_err());
    }

    #[test]
    fn json_string_escapes() {
        let mut out = String::new();
        write_json_string("q\"b\\n\n\t\u{1}é", &mut out);
        assert_eq!(out, r#""q\"b\\n\n\t\u0001é""#);
    }

    #[test]
    fn merge_keeps_sibling_keys_and_set_replaces() {
        let mut tree = Tree::default();
        tree.merge(&path(&["d"]), Value::Map(vec![("x".into(), Value::Int(1))]));
        tree.merge(&path(&["d"]), Value::Map(vec![("y".into(), Value::Int(2))]));
        assert_eq!(tree.to_json(), r#"{"d":{"x":1,"y":2}}"#);
        tree.set(&path(&["d"]), Value::Map(vec![("z".into(), Value::Int(3))]));
        assert_eq!(tree.to_json(), r#"{"d":{"z":3}}"#);
        tree.merge(&path(&["d", "z", "deep"]), Value::Int(4));
        assert_eq!(tree.to_json(), r#"{"d":{"z":{"deep":4}}}"#);
    }

    #[test]
    fn leaves_are_full_paths() {
        let mut tree = Tree::default();
        tree.merge(
            &[],
            Value::Map(vec![
                ("loss".into(), Value::Float(0.5)),
                (
                    "d".into(),
                    Value::Map(vec![
                        ("x".into(), Value::Int(1)),
                        ("e".into(), Value::Map(vec![])),
                    ]),
                ),
            ]),
        );
        let leaves: Vec<_> = tree
            .leaves()
            .into_iter()
            .map(|(p, v)| (p, v.clone()))
            .collect();
        assert_eq!(
            leaves,
            vec![
                (path(&["loss"]), Value::Float(0.5)),
                (path(&["d", "x"]), Value::Int(1)),
                (path(&["d", "e"]), Value::Map(vec![])),
            ]
        );
    }

    #[test]
    fn remove_nested_and_missing() {
        let mut tree = Tree::default();
        tree.merge(&path(&["a", "b"]), Value::Int(1));
        assert!(tree.remove(&path(&["a", "b"])));
        assert!(!tree.remove(&path(&["a", "b"])));
        assert!(!tree.remove(&path(&["x", "y"])));
        assert!(tree.get(&path(&["a"])).is_some());
    }
}
