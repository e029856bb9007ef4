//! What figment would stop at, found all at once and placed: every unknown key (with the
//! nearest known key of its table), every value of the wrong type, and syntax errors, each with
//! the file and line. Known keys and types come from the configuration types (their schema, and
//! their own deserialization of each value), so this check cannot drift from what is read.

use std::ops::Range;

use serde::Deserialize;
use toml_edit::{ImDocument, Item, TableLike};

use super::schema::{Schema, suggest};
use super::{Problem, RawConfig};

/// One step of a key's path: a key, or a position in an array of tables.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every unknown key, type error and syntax error of `text`, the contents of `file`.
pub(super) fn check_file(text: &str, file: &str) -> Vec<Problem> {
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            return vec![Problem {
                key: format!("{file}:{line}"),
                message: format!("is not valid TOML: {}", e.message().trim()),
            }];
        }
    };
    let value = match toml::from_str::<toml::Table>(text) {
        Ok(v) => toml::Value::Table(v),
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            return vec![Problem {
                key: format!("{file}:{line}"),
                message: format!("is not valid TOML: {}", e.message().trim()),
            }];
        }
    };
    let mut check = Check {
        schema: Schema::new(),
        text,
        file,
        doc: &doc,
        problems: Vec::new(),
    };
    let root = check.schema.root().clone();
    check.walk(&value, &root, &mut Vec::new());
    // In the order of the file (the walk goes by key name).
    check.problems.sort_by_key(|(line, _)| *line);
    check.problems.into_iter().map(|(_, p)| p).collect()
}

struct Check<'a> {
    schema: Schema,
    text: &'a str,
    file: &'a str,
    doc: &'a ImDocument<&'a str>,
    /// Each problem with its line.
    problems: Vec<(usize, Problem)>,
}

impl Check<'_> {
    fn walk(&mut self, value: &toml::Value, node: &serde_json::Value, path: &mut Vec<Step>) {
        match value {
            toml::Value::Table(entries) => {
                let Some(table) = self.schema.table(node) else {
                    return self.leaf(value, node, path);
                };
                let known: Vec<String> = table.keys().into_iter().map(str::to_owned).collect();
                let children: Vec<(String, Option<serde_json::Value>)> = entries
                    .keys()
                    .map(|k| (k.clone(), table.get(k).cloned()))
                    .collect();
                for (key, sub) in children {
                    path.push(Step::Key(key.clone()));
                    match sub {
                        Some(sub) => self.walk(&entries[&key], &sub, path),
                        None => self.unknown(path, &key, &known),
                    }
                    path.pop();
                }
            }
            toml::Value::Array(items) => {
                let Some(item_node) = self.schema.table_list(node).cloned() else {
                    return self.leaf(value, node, path);
                };
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    self.walk(item, &item_node, path);
                    path.pop();
                }
            }
            _ => self.leaf(value, node, path),
        }
    }

    fn unknown(&mut self, path: &[Step], key: &str, known: &[String]) {
        let table = match &path[..path.len() - 1] {
            [] => "the top level".to_owned(),
            parent => format!("[{}]", dotted(parent)),
        };
        let hint = match suggest(key, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean {near}?"),
            None if known.is_empty() => format!("{table} takes no keys"),
            None => format!("{table} has {}", known.join(", ")),
        };
        let (line, place) = self.place(path);
        let message = format!("unknown key ({place}); {hint}");
        self.problems.push((
            line,
            Problem {
                key: dotted(path),
                message,
            },
        ));
    }

    /// A value checked by deserializing a configuration that holds it alone: the types'
    /// own error, for this value only.
    fn leaf(&mut self, value: &toml::Value, node: &serde_json::Value, path: &[Step]) {
        // A `[profile.NAME]` key is a top-level key in an overlay.
        let own = match path {
            [Step::Key(p), Step::Key(_), rest @ ..] if p == "profile" && !rest.is_empty() => rest,
            _ => path,
        };
        let mut alone = value.clone();
        for step in own.iter().rev() {
            alone = match step {
                Step::Key(k) => toml::Value::Table(toml::Table::from_iter([(k.clone(), alone)])),
                Step::Index(_) => toml::Value::Array(vec![alone]),
            };
        }
        let Err(e) = RawConfig::deserialize(alone) else {
            return;
        };
        let mut message = e.message().trim().to_owned();
        if message.contains("did not match any variant") {
            message = format!("expected {}", expected(&self.schema, node));
        }
        if let Some(at) = message.find("struct Raw") {
            message.replace_range(at.., "a table");
        }
        let (line, place) = self.place(path);
        let message = format!("{message} ({place})");
        self.problems.push((
            line,
            Problem {
                key: dotted(path),
                message,
            },
        ));
    }

    /// The line of the key of `path`, and `vestibule.toml:12` to say it.
    fn place(&self, path: &[Step]) -> (usize, String) {
        match span_of(self.doc, path) {
            Some(span) => {
                let line = line_of(self.text, span.start);
                (line, format!("{}:{line}", self.file))
            }
            None => (usize::MAX, self.file.to_owned()),
        }
    }
}

/// What a key takes, said from its schema (for values no variant of an either-type accepted).
fn expected(schema: &Schema, node: &serde_json::Value) -> String {
    let node = schema.resolve(node);
    let one = |n: &serde_json::Value| -> Option<&'static str> {
        let n = schema.resolve(n);
        match n.get("type").and_then(serde_json::Value::as_str)? {
            "string" => Some("a string"),
            "integer" => Some("a whole number"),
            "boolean" => Some("true or false"),
            "array" => Some("a list of strings"),
            "object" => Some("a table"),
            _ => None,
        }
    };
    let said: Vec<&str> = match node.get("anyOf").or_else(|| node.get("oneOf")) {
        Some(serde_json::Value::Array(vs)) => vs.iter().filter_map(one).collect(),
        _ => one(node).into_iter().collect(),
    };
    if said.is_empty() {
        "another kind of value".into()
    } else {
        said.join(" or ")
    }
}

fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// Where the key (or array element) at `path` is written.
fn span_of(doc: &ImDocument<&str>, path: &[Step]) -> Option<Range<usize>> {
    let mut item: &Item = doc.as_item();
    let mut span = None;
    let mut steps = path.iter().peekable();
    while let Some(step) = steps.next() {
        match step {
            Step::Key(k) => {
                let table: &dyn TableLike = item.as_table_like()?;
                let (key, next) = table.get_key_value(k)?;
                span = key.span().or_else(|| next.span()).or(span);
                item = next;
            }
            Step::Index(i) => match item {
                Item::ArrayOfTables(tables) => {
                    let table = tables.get(*i)?;
                    span = table.span().or(span);
                    // The rest of the path is inside this table.
                    let Some(Step::Key(k)) = steps.next() else {
                        return span;
                    };
                    let (key, next) = table.get_key_value(k)?;
                    span = key.span().or_else(|| next.span()).or(span);
                    item = next;
                }
                Item::Value(toml_edit::Value::Array(values)) => {
                    let value = values.get(*i)?;
                    span = value.span().or(span);
                    let Some(Step::Key(k)) = steps.next() else {
                        return span;
                    };
                    let (key, next) = value.as_inline_table()?.get_key_value(k)?;
                    span = key.span().or_else(|| next.span()).or(span);
                    item = next;
                }
                _ => return span,
            },
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::check_file;
    use crate::config::load::stray_variables;
    use crate::config::schema::Schema;

    fn said(text: &str) -> Vec<String> {
        check_file(text, "vestibule.toml")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_unknown_key_and_type_error_is_reported_at_once_with_line_and_suggestion() {
        let text = "listen = \"127.0.0.1:8000\"\nspa_orgins = [\"http://localhost:3000\"]\n\n[auth]\nsignup = \"yes\"\n\n[session]\nidle_timout = \"1d\"\nstore = 5\n";
        let got = said(text);
        assert_eq!(
            got,
            [
                "spa_orgins: unknown key (vestibule.toml:2); did you mean spa_origins?",
                "auth.signup: invalid type: string \"yes\", expected a boolean (vestibule.toml:5)",
                "session.idle_timout: unknown key (vestibule.toml:8); did you mean idle_timeout?",
                "session.store: expected a string or a list of strings (vestibule.toml:9)",
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn nested_tables_profiles_and_upstreams_are_checked_too() {
        let text = "[[upstream]]\nprefix = \"/api\"\nurll = \"http://127.0.0.1:8001\"\n\n[profile.dev]\ndemo = 1\nzzzz_nothing_like_it = true\n\n[static_site.headers]\n\"X-Anything\" = \"goes\"\n\n[cors]\nmax_age = true\n";
        let got = said(text);
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got[0]
                .starts_with("upstream[0].urll: unknown key (vestibule.toml:3); did you mean url?"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with(
                "profile.dev.demo: invalid type: integer `1`, expected a boolean (vestibule.toml:6)"
            ),
            "{got:#?}"
        );
        assert!(got[2].starts_with("profile.dev.zzzz_nothing_like_it: unknown key (vestibule.toml:7); [profile.dev] has auth, "), "{got:#?}");
        assert!(
            got[3].starts_with(
                "cors.max_age: expected a whole number or a string (vestibule.toml:13)"
            ),
            "{got:#?}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line_and_a_valid_file_has_no_problems() {
        let got = said("listen = \"127.0.0.1:8000\"\n[session\nstore = \"memory\"\n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("vestibule.toml:2: is not valid TOML"),
            "{got:?}"
        );
        assert!(said("listen = \"127.0.0.1:8000\"\n[session]\nstore = [\"redis://a:1\"]\n[cors]\nmax_age = \"10m\"\n").is_empty());
    }

    #[test]
    fn without_a_vestibule_key_in_the_environment_no_schema_is_generated() {
        let names = [
            "PATH",
            "HOME",
            "VESTIBULE_LOG",
            "VESTIBULE_CONFIG",
            "VESTIBULE_PROFILE",
        ]
        .map(String::from);
        let strays = stray_variables(
            || panic!("the schema was generated with nothing to check"),
            names.into_iter(),
        );
        assert!(strays.is_empty());
    }

    #[test]
    fn stray_environment_variables_are_named_with_a_suggestion_and_keys_are_not() {
        let names = [
            "VESTIBULE_REQUIRE_SERVICES",
            "VESTIBULE_SESSION__IDLE_TIMOUT",
            "VESTIBULE_SESSION__IDLE_TIMEOUT",
            "VESTIBULE_SPA_ORIGINS",
            "VESTIBULE_PROFILE",
            "VESTIBULE_LOG",
            "VESTIBULE_CONFIG",
            "PATH",
        ]
        .map(String::from);
        let strays = stray_variables(Schema::new, names.into_iter());
        let named: Vec<&str> = strays.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            named,
            [
                "VESTIBULE_REQUIRE_SERVICES",
                "VESTIBULE_SESSION__IDLE_TIMOUT"
            ]
        );
        assert!(
            strays[1]
                .1
                .contains("did you mean VESTIBULE_SESSION__IDLE_TIMEOUT?"),
            "{strays:?}"
        );
        assert!(
            strays[0]
                .1
                .contains("is not a configuration key and is ignored"),
            "{strays:?}"
        );
    }
}
