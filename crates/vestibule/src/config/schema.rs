//! The JSON Schema of `vestibule.toml`, generated from the configuration types (their fields,
//! defaults and doc comments by `schemars`): `vestibule config schema` prints it for editors,
//! `docs/CONFIG.md` is rendered from it ([`reference`]), and the file and environment checks
//! take each table's known keys from it, so no list of keys is kept by hand.

use serde_json::{Map, Value};

use super::RawConfig;

/// The JSON Schema (draft 2020-12) of `vestibule.toml`.
pub fn json_schema() -> Value {
    schemars::schema_for!(RawConfig).to_value()
}

/// The schema, walked by key.
pub(crate) struct Schema {
    root: Value,
}

/// What a table allows: its keys, and whether others are refused.
pub(crate) struct Table<'a> {
    properties: Option<&'a Map<String, Value>>,
    /// `additionalProperties`: `None` when absent (any key), `Some(false)` closed, or a schema.
    additional: Option<&'a Value>,
}

impl<'a> Table<'a> {
    /// The schema of `key`, or `None` when the table refuses it.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        if let Some(node) = self.properties.and_then(|p| p.get(key)) {
            return Some(node);
        }
        match self.additional {
            Some(Value::Bool(false)) => None,
            Some(node) => Some(node),
            None => Some(&Value::Bool(true)),
        }
    }

    /// The keys it names, in order.
    pub(crate) fn keys(&self) -> Vec<&'a str> {
        self.properties
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether it has named keys (a section), as opposed to a map of any keys.
    pub(crate) fn is_section(&self) -> bool {
        self.properties.is_some()
    }
}

impl Schema {
    pub(crate) fn new() -> Self {
        Self {
            root: json_schema(),
        }
    }

    pub(crate) fn root(&self) -> &Value {
        &self.root
    }

    /// `node` with its `$ref`s followed (`#` and `#/$defs/Name`).
    pub(crate) fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..8 {
            let Some(target) = node.get("$ref").and_then(Value::as_str) else {
                break;
            };
            node = match target.strip_prefix("#/$defs/") {
                Some(name) => &self.root["$defs"][name],
                None if target == "#" => &self.root,
                None => break,
            };
        }
        node
    }

    /// The table `node` describes (directly or as one of its `anyOf` variants, e.g. an
    /// optional table), or `None` when it is not a table.
    pub(crate) fn table<'a>(&'a self, node: &'a Value) -> Option<Table<'a>> {
        let node = self.resolve(node);
        let properties = node.get("properties").and_then(Value::as_object);
        let additional = node.get("additionalProperties");
        if properties.is_some() || additional.is_some() || type_is(node, "object") {
            return Some(Table {
                properties,
                additional,
            });
        }
        variants(node).find_map(|v| self.table(v))
    }

    /// The schema of a list's items when `node` is a list of tables (`[[upstream]]`).
    pub(crate) fn table_list<'a>(&'a self, node: &'a Value) -> Option<&'a Value> {
        let node = self.resolve(node);
        match node.get("items") {
            Some(items) if self.table(items).is_some() => Some(items),
            _ => variants(node).find_map(|v| self.table_list(v)),
        }
    }

    /// The schema at a dotted path of keys (`["session", "idle_timeout"]`), if it is one.
    pub(crate) fn at<'a>(&'a self, path: &[&str]) -> Option<&'a Value> {
        let mut node = &self.root;
        for key in path {
            node = self.table(node)?.get(key)?;
        }
        Some(node)
    }

    /// Every key that holds a value (not a section), with its schema: `("session.store", …)`;
    /// keys of `[[upstream]]` tables as `upstream[].prefix`. Profiles are left out (they hold
    /// the same keys again).
    pub(crate) fn leaves(&self) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        self.collect(&self.root, String::new(), &mut out);
        out
    }

    fn collect<'a>(&'a self, node: &'a Value, prefix: String, out: &mut Vec<(String, &'a Value)>) {
        let Some(table) = self.table(node) else {
            return;
        };
        for key in table.keys() {
            if prefix.is_empty() && key == "profile" {
                continue;
            }
            let Some(sub) = table.get(key) else { continue };
            let path = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            if self.table(sub).is_some_and(|t| t.is_section()) {
                self.collect(sub, path, out);
            } else if let Some(items) = self.table_list(sub) {
                self.collect(items, format!("{path}[]"), out);
            } else {
                out.push((path, sub));
            }
        }
    }
}

fn type_is(node: &Value, name: &str) -> bool {
    match node.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == name),
        _ => false,
    }
}

fn variants(node: &Value) -> impl Iterator<Item = &Value> {
    ["anyOf", "oneOf"]
        .into_iter()
        .filter_map(|k| node.get(k).and_then(Value::as_array))
        .flatten()
}

/// The nearest of `known` to `typed` when it is close enough to be a typo (edit distance at
/// most 2, or a third of the name).
pub(crate) fn suggest<'a>(
    typed: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let typed_lower = typed.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| {
            (
                strsim::levenshtein(&typed_lower, &k.to_ascii_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// `docs/CONFIG.md`: every key with its default, its environment variable and its meaning,
/// rendered from the schema (so from the types and their doc comments).
pub fn reference() -> String {
    let schema = Schema::new();
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the configuration types by `cargo test -p vestibule --lib config::schema`\n\
         (`UPDATE_CONFIG_DOC=1` rewrites it); do not edit by hand. Keys are read from\n\
         `vestibule.toml` (or `--config FILE`), then from `VESTIBULE_*` variables (sections joined\n\
         by `__`; lists comma-separated), then from flags. `vestibule config schema` prints the\n\
         JSON Schema editors use to complete and check the file. `[profile.NAME]` tables take the\n\
         same keys and are merged over the top level with `--profile NAME`.\n",
    );
    let mut leaves = schema.leaves();
    let table_of = |key: &str| {
        key.rsplit_once('.')
            .map_or(String::new(), |(t, _)| t.to_owned())
    };
    // The top level first, then each table's keys together.
    leaves.sort_by_key(|(key, _)| table_of(key));
    let mut section: Option<String> = None;
    for (key, node) in leaves {
        let table = table_of(&key);
        if section.as_deref() != Some(table.as_str()) {
            let title = if table.is_empty() {
                "Top level".to_owned()
            } else if let Some(list) = table.strip_suffix("[]") {
                format!("`[[{list}]]`")
            } else {
                format!("`[{table}]`")
            };
            out.push_str(&format!(
                "\n## {title}\n\n| Key | Default | Environment | Meaning |\n|---|---|---|---|\n"
            ));
            section = Some(table);
        }
        let default = match node.get("default") {
            None | Some(Value::Null) => "(unset)".to_owned(),
            Some(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
        };
        let env = if key.contains("[]") {
            "(file only)".to_owned()
        } else {
            format!("`{}`", super::load::env_name(&key))
        };
        let meaning = node
            .get("description")
            .and_then(Value::as_str)
            .or_else(|| {
                schema
                    .resolve(node)
                    .get("description")
                    .and_then(Value::as_str)
            })
            .unwrap_or("")
            .replace('\n', " ")
            .replace('|', "\\|");
        let name = key.rsplit('.').next().unwrap_or(&key);
        out.push_str(&format!("| `{name}` | {default} | {env} | {meaning} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn repo() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    #[test]
    fn docs_config_md_is_current() {
        let path = repo().join("docs/CONFIG.md");
        let fresh = super::reference();
        if std::env::var_os("UPDATE_CONFIG_DOC").is_some() {
            std::fs::write(&path, &fresh).expect("write docs/CONFIG.md");
        }
        let written = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            written == fresh,
            "docs/CONFIG.md is not current: run `UPDATE_CONFIG_DOC=1 cargo test -p vestibule --lib config::schema` and commit it"
        );
        for key in [
            "spa_origins",
            "idle_timeout",
            "VESTIBULE_SESSION__IDLE_TIMEOUT",
            "`[[upstream]]`",
        ] {
            assert!(fresh.contains(key), "{key} missing");
        }
    }

    /// The schema (through the file check, which takes its keys from it) accepts every `vestibule
    /// init` template and the deploy recipe's file, and refuses a typo in each.
    #[test]
    fn the_schema_accepts_the_shipped_configurations_and_refuses_a_typo() {
        let mut files = vec![repo().join("deploy/vestibule.toml")];
        let init = repo().join("crates/vestibule-cli/src/cmd/init");
        for entry in std::fs::read_dir(&init).expect("init templates") {
            files.push(entry.expect("entry").path());
        }
        assert!(files.len() >= 4, "{files:?}");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read");
            let problems = super::super::check::check_file(&text, "f.toml");
            assert!(problems.is_empty(), "{}: {problems:?}", file.display());
            let typo = format!("spa_orgins = []\n{text}");
            let problems = super::super::check::check_file(&typo, "f.toml");
            assert_eq!(problems.len(), 1, "{}: {problems:?}", file.display());
            assert!(problems[0].message.contains("did you mean spa_origins?"));
        }
        let schema = super::json_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["$defs"]["RawSession"]["properties"]["idle_timeout"]["type"],
            serde_json::json!(["string", "null"])
        );
    }
}
