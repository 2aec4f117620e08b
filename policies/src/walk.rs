//! Walks a parsed TOML document by hand, keeping the span of every key and value, so the policy
//! and config parsers can report every problem with its file, line and dotted key, and every key
//! nobody asked for as unknown.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::OnceLock;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{PolicyError, ValueError};

/// One file being checked: where it is, how byte offsets map to lines, and the problems found so
/// far. Walkers share it by reference, so nested sections report into the same list.
pub(crate) struct Document {
    file: PathBuf,
    line_starts: Vec<usize>,
    errors: RefCell<Vec<PolicyError>>,
}

impl Document {
    pub(crate) fn new(file: impl Into<PathBuf>, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Self {
            file: file.into(),
            line_starts,
            errors: RefCell::new(Vec::new()),
        }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    pub(crate) fn error(&self, offset: Option<usize>, key: &str, message: impl Into<String>) {
        let line = offset.map(|offset| self.line(offset));
        self.errors
            .borrow_mut()
            .push(PolicyError::new(&self.file, line, key, message));
    }

    pub(crate) fn into_errors(self) -> Vec<PolicyError> {
        self.errors.into_inner()
    }

    /// Parses the text, or records the first syntax error and returns `None`.
    ///
    /// Only the first error is kept: after one mistake the parser's recovery produces follow-on
    /// errors on later lines that point at text which is fine, and checking the keys of a
    /// half-parsed document would add "missing key" noise.
    pub(crate) fn parse<'i>(&self, text: &'i str) -> Option<DeTable<'i>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        let first = errors
            .iter()
            .min_by_key(|error| error.span().map_or(usize::MAX, |span| span.start));
        match first {
            None => Some(table.into_inner()),
            Some(error) => {
                let offset = error.span().map(|span| span.start);
                self.error(offset, "", format!("invalid TOML: {}", error.message()));
                None
            }
        }
    }

    pub(crate) fn root<'d, 'i>(&'d self, table: &'d DeTable<'i>) -> TableWalker<'d, 'i> {
        TableWalker {
            doc: self,
            table,
            path: String::new(),
            header: None,
            used: Vec::new(),
        }
    }
}

/// One table of the document (the top level, a `[section]`, an inline table or one element of
/// a `[[list]]`). Every key read is marked as used; [`TableWalker::finish`] reports the rest.
pub(crate) struct TableWalker<'d, 'i> {
    doc: &'d Document,
    table: &'d DeTable<'i>,
    path: String,
    /// Where "missing key" errors point: the table's header; `None` for the top level.
    header: Option<usize>,
    used: Vec<&'d str>,
}

impl<'d, 'i> TableWalker<'d, 'i> {
    pub(crate) fn doc(&self) -> &'d Document {
        self.doc
    }

    /// Dotted path of a key of this table, as errors name it.
    pub(crate) fn key_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// Line of this table's header, for problems of the table as a whole.
    pub(crate) fn header_offset(&self) -> Option<usize> {
        self.header
    }

    pub(crate) fn field(&mut self, name: &'d str) -> Option<Field<'d, 'i>> {
        self.used.push(name);
        let value = self.table.get(name)?;
        Some(Field {
            doc: self.doc,
            key: self.key_path(name),
            value,
        })
    }

    pub(crate) fn required(&mut self, name: &'d str) -> Option<Field<'d, 'i>> {
        let field = self.field(name);
        if field.is_none() {
            self.doc
                .error(self.header, &self.key_path(name), "missing required key");
        }
        field
    }

    pub(crate) fn str(&mut self, name: &'d str) -> Option<(Field<'d, 'i>, &'d str)> {
        let field = self.field(name)?;
        let text = field.str()?;
        Some((field, text))
    }

    pub(crate) fn required_str(&mut self, name: &'d str) -> Option<(Field<'d, 'i>, &'d str)> {
        let field = self.required(name)?;
        let text = field.str()?;
        Some((field, text))
    }

    /// A string where `""` means "not set", as the example configs write optional values.
    pub(crate) fn non_empty_str(&mut self, name: &'d str) -> Option<(Field<'d, 'i>, &'d str)> {
        self.str(name).filter(|(_, text)| !text.is_empty())
    }

    pub(crate) fn bool_or(&mut self, name: &'d str, default: bool) -> bool {
        self.field(name).and_then(|f| f.bool()).unwrap_or(default)
    }

    /// A string value turned into `T` by `parse`, whose error's message follows the key.
    pub(crate) fn parsed<T>(
        &mut self,
        name: &'d str,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Option<T> {
        self.field(name)?.parsed(parse)
    }

    /// An array of strings; elements of another type are reported and left out.
    pub(crate) fn strings(&mut self, name: &'d str) -> Option<Vec<(Field<'d, 'i>, &'d str)>> {
        let field = self.field(name)?;
        let items = field.array()?;
        Some(
            items
                .into_iter()
                .filter_map(|item| item.str().map(|text| (item, text)))
                .collect(),
        )
    }

    pub(crate) fn table(&mut self, name: &'d str) -> Option<TableWalker<'d, 'i>> {
        self.field(name)?.table()
    }

    /// An optional section: its table, or an empty one when it is absent (or not a table, which
    /// is reported), so the section's parser is also where its defaults are.
    pub(crate) fn section(&mut self, name: &'d str) -> TableWalker<'d, 'i> {
        static EMPTY: OnceLock<DeTable<'static>> = OnceLock::new();
        let path = self.key_path(name);
        self.table(name).unwrap_or_else(|| TableWalker {
            doc: self.doc,
            table: EMPTY.get_or_init(DeTable::new),
            path,
            header: None,
            used: Vec::new(),
        })
    }

    /// An array of tables (`[[sso]]`), each element walked on its own.
    pub(crate) fn tables(&mut self, name: &'d str) -> Vec<TableWalker<'d, 'i>> {
        let Some(items) = self.field(name).and_then(|field| field.array()) else {
            return Vec::new();
        };
        items.into_iter().filter_map(|item| item.table()).collect()
    }

    /// Reports every key of this table that was not read.
    pub(crate) fn finish(self) {
        for (key, _) in self.table.iter() {
            let name: &str = key.get_ref();
            if !self.used.contains(&name) {
                self.doc
                    .error(Some(key.span().start), &self.key_path(name), "unknown key");
            }
        }
    }
}

/// One value, with the dotted key that names it in errors.
pub(crate) struct Field<'d, 'i> {
    doc: &'d Document,
    key: String,
    value: &'d Spanned<DeValue<'i>>,
}

impl<'d, 'i> Field<'d, 'i> {
    pub(crate) fn offset(&self) -> usize {
        self.value.span().start
    }

    pub(crate) fn line(&self) -> usize {
        self.doc.line(self.offset())
    }

    pub(crate) fn error(&self, message: impl Into<String>) {
        self.doc.error(Some(self.offset()), &self.key, message);
    }

    fn wrong_type(&self, expected: &str) {
        self.error(format!(
            "expected {expected}, found {}",
            self.value.get_ref().type_str()
        ));
    }

    pub(crate) fn str(&self) -> Option<&'d str> {
        match self.value.get_ref() {
            DeValue::String(text) => Some(text.as_ref()),
            _ => {
                self.wrong_type("a string");
                None
            }
        }
    }

    pub(crate) fn bool(&self) -> Option<bool> {
        match self.value.get_ref() {
            DeValue::Boolean(value) => Some(*value),
            _ => {
                self.wrong_type("true or false");
                None
            }
        }
    }

    pub(crate) fn integer(&self) -> Option<i64> {
        match self.value.get_ref() {
            DeValue::Integer(number) => {
                let parsed = i64::from_str_radix(number.as_str(), number.radix()).ok();
                if parsed.is_none() {
                    self.error("integer out of range");
                }
                parsed
            }
            _ => {
                self.wrong_type("an integer");
                None
            }
        }
    }

    pub(crate) fn parsed<T>(&self, parse: impl FnOnce(&str) -> Result<T, ValueError>) -> Option<T> {
        let text = self.str()?;
        parse(text)
            .map_err(|error| self.error(error.to_string()))
            .ok()
    }

    pub(crate) fn array(&self) -> Option<Vec<Field<'d, 'i>>> {
        match self.value.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, value)| Field {
                        doc: self.doc,
                        key: format!("{}[{index}]", self.key),
                        value,
                    })
                    .collect(),
            ),
            _ => {
                self.wrong_type("an array");
                None
            }
        }
    }

    pub(crate) fn table(&self) -> Option<TableWalker<'d, 'i>> {
        match self.value.get_ref() {
            DeValue::Table(table) => Some(TableWalker {
                doc: self.doc,
                table,
                path: self.key.clone(),
                header: Some(self.offset()),
                used: Vec::new(),
            }),
            _ => {
                self.wrong_type("a table");
                None
            }
        }
    }
}

/// Maps a keyword to its value, naming the choices when the text is none of them.
pub(crate) fn one_of<T: Copy>(text: &str, choices: &[(&'static str, T)]) -> Result<T, ValueError> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| ValueError::NotOneOf {
            text: text.to_owned(),
            choices: choices.iter().map(|(name, _)| *name).collect(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn messages(doc: Document) -> Vec<String> {
        doc.into_errors().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn maps_offsets_to_lines() {
        let doc = Document::new("f.toml", "a\nbc\n\nd");
        assert_eq!(doc.line(0), 1);
        assert_eq!(doc.line(1), 1);
        assert_eq!(doc.line(2), 2);
        assert_eq!(doc.line(5), 3);
        assert_eq!(doc.line(6), 4);
    }

    #[test]
    fn reports_types_missing_and_unknown_keys_with_lines() {
        let text = "a = 1\nb = \"x\"\n[t]\nc = [\"ok\", 2]\nextra = true\n";
        let doc = Document::new("f.toml", text);
        let table = doc.parse(text).unwrap();
        let mut root = doc.root(&table);
        assert!(root.str("a").is_none());
        assert_eq!(root.required_str("b").map(|(_, s)| s), Some("x"));
        assert!(root.required("missing").is_none());
        let mut t = root.table("t").unwrap();
        let items = t.strings("c").unwrap();
        assert_eq!(items.len(), 1);
        assert!(t.required("d").is_none());
        t.finish();
        root.finish();
        assert_eq!(
            messages(doc),
            [
                "f.toml:1: a: expected a string, found integer",
                "f.toml: missing: missing required key",
                "f.toml:4: t.c[1]: expected a string, found integer",
                "f.toml:3: t.d: missing required key",
                "f.toml:5: t.extra: unknown key",
            ]
        );
    }

    #[test]
    fn reports_the_first_syntax_error_only() {
        let text = "a = 1\nb = [1,\nc = 2\n";
        let doc = Document::new("f.toml", text);
        assert!(doc.parse(text).is_none());
        let errors = messages(doc);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("f.toml:3: invalid TOML: "),
            "{errors:?}"
        );
    }
}
