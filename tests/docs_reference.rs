#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The reference pages of the book that are generated from the code, so
//! that they cannot drift from it: the command line (from the clap
//! definitions), the config file (from the key table the config parser's
//! tests hold to the parser), the metrics (from what a real `stepup serve`
//! exports) and the gRPC API (from `proto/` and its comments).
//!
//! Each test renders its page and compares it with the file under
//! `docs/src/`; a difference fails the test (and so `cargo test` in CI).
//! `STEPUP_UPDATE_DOCS=1 cargo test --test docs_reference` rewrites the
//! files instead.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

const REGENERATE: &str = "STEPUP_UPDATE_DOCS=1 cargo test --test docs_reference";

/// Compares `rendered` with `docs/src/<page>`, or writes it there when
/// `STEPUP_UPDATE_DOCS` is set.
fn check_page(page: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/src")
        .join(page);
    if std::env::var_os("STEPUP_UPDATE_DOCS").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != rendered {
        let (line, ours, theirs) = first_difference(&on_disk, rendered);
        panic!(
            "docs/src/{page} is out of date with the code (first difference at line {line}:\n  \
             file: {theirs}\n  code: {ours}\n); regenerate it with `{REGENERATE}` and commit it"
        );
    }
}

/// The first line where `a` (the file) and `b` (the code) differ: its
/// number and both versions.
fn first_difference(a: &str, b: &str) -> (usize, String, String) {
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    let mut n = 1;
    loop {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => {
                let show = |l: Option<&str>| l.map_or("(end of page)".to_owned(), str::to_owned);
                return (n, show(y), show(x));
            }
        }
    }
}

/// The first line of every generated page: what it comes from and how to
/// regenerate it (an HTML comment: readers of the book do not see it).
fn generated_from(source: &str) -> String {
    format!(
        "<!-- Generated from {source} by tests/docs_reference.rs: do not edit. \
         Regenerate with `{REGENERATE}`. -->\n"
    )
}

/// `text` as the content of a table cell: one line, pipes escaped,
/// paragraphs separated by `<br><br>`.
fn cell(text: &str) -> String {
    text.trim()
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("<br><br>")
        .replace('|', "\\|")
}

/// Help text as Markdown: `*` and `<` outside code spans escaped (help is
/// plain text: `*.yaml` is a glob, not emphasis), and a final period that
/// clap leaves off a one-paragraph help put back.
fn help_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut in_code = false;
    for c in text.trim().chars() {
        match c {
            '`' => in_code = !in_code,
            '*' | '<' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    if out.ends_with(|c: char| c.is_alphanumeric() || matches!(c, ')' | ']' | '`')) {
        out.push('.');
    }
    out
}

// ---------------------------------------------------------------------------
// Command line

mod cli {
    use super::*;
    use clap::{Arg, Command, CommandFactory as _};

    /// The page: the root command, the exit codes of its after-help, then
    /// every subcommand with its arguments and options.
    pub fn render() -> String {
        let mut root = stepup::cli::Cli::command();
        root.build();
        let mut out = generated_from("the `stepup` command's definitions (src/cli.rs, src/cli/)");
        out.push_str("# Command line\n\n");
        if let Some(about) = root.get_long_about().or(root.get_about()) {
            let _ = writeln!(out, "{}\n", help_text(&about.to_string()));
        }
        let _ = writeln!(
            out,
            "```text\n{}\n```\n",
            usage(&mut root.clone()).trim_start_matches("Usage: ")
        );
        out.push_str("| command | what it does |\n| --- | --- |\n");
        for sub in visible_subcommands(&root) {
            let name = sub.get_name();
            let _ = writeln!(
                out,
                "| [`stepup {name}`](#stepup-{name}) | {} |",
                cell(&help_text(
                    &sub.get_about().map(ToString::to_string).unwrap_or_default()
                ))
            );
        }
        out.push('\n');
        let globals: Vec<&Arg> = root.get_arguments().filter(|a| !a.is_hide_set()).collect();
        if !globals.is_empty() {
            out.push_str("## Options of every command\n\n");
            for arg in globals {
                option(&mut out, arg);
            }
        }
        if let Some(after) = root.get_after_long_help().or(root.get_after_help()) {
            exit_codes(&mut out, &after.to_string());
        }
        let subs: Vec<Command> = visible_subcommands(&root).cloned().collect();
        for mut sub in subs {
            subcommand(&mut out, &mut sub);
        }
        out
    }

    fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    }

    fn usage(cmd: &mut Command) -> String {
        cmd.render_usage().to_string()
    }

    /// The `Exit codes:` block of an after-help as a table (a row's
    /// continuation lines, indented deeper, joined to it); the text after
    /// the block as a paragraph.
    fn exit_codes(out: &mut String, after: &str) {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut other = Vec::new();
        let mut in_block = false;
        for line in after.lines() {
            let trimmed = line.trim();
            let mut parts = trimmed.splitn(2, char::is_whitespace);
            match (parts.next(), parts.next()) {
                _ if trimmed == "Exit codes:" => in_block = true,
                _ if trimmed.is_empty() => in_block = false,
                (Some(code), Some(meaning)) if in_block && code.parse::<u8>().is_ok() => {
                    rows.push((code.to_owned(), meaning.trim().to_owned()));
                }
                _ if in_block => match rows.last_mut() {
                    Some((_, meaning)) => {
                        meaning.push(' ');
                        meaning.push_str(trimmed);
                    }
                    None => other.push(trimmed.to_owned()),
                },
                _ => other.push(trimmed.to_owned()),
            }
        }
        if !rows.is_empty() {
            out.push_str("## Exit codes\n\n| code | meaning |\n| --- | --- |\n");
            for (code, meaning) in rows {
                let _ = writeln!(out, "| `{code}` | {} |", cell(&help_text(&meaning)));
            }
            out.push('\n');
        }
        if !other.is_empty() {
            let _ = writeln!(out, "{}\n", other.join(" "));
        }
    }

    fn subcommand(out: &mut String, sub: &mut Command) {
        let name = sub.get_name().to_owned();
        let _ = writeln!(out, "## `stepup {name}`\n");
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            let _ = writeln!(out, "{}\n", help_text(&about.to_string()));
        }
        let _ = writeln!(
            out,
            "```text\n{}\n```\n",
            usage(sub).trim_start_matches("Usage: ")
        );
        let args: Vec<Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !is_generated(a))
            .cloned()
            .collect();
        let (positional, options): (Vec<&Arg>, Vec<&Arg>) =
            args.iter().partition(|a| a.is_positional());
        if !positional.is_empty() {
            out.push_str("### Arguments\n\n");
            for arg in positional {
                option(out, arg);
            }
        }
        if !options.is_empty() {
            out.push_str("### Options\n\n");
            for arg in options {
                option(out, arg);
            }
        }
        if let Some(after) = sub.get_after_long_help().or(sub.get_after_help()) {
            let _ = writeln!(out, "{}\n", help_text(&after.to_string()));
        }
    }

    /// `--help` and `--version`, which clap adds to every command: listed
    /// once, with the root's options.
    fn is_generated(arg: &Arg) -> bool {
        matches!(arg.get_id().as_str(), "help" | "version")
    }

    /// One argument: its syntax as a heading, its help, then environment
    /// variable, default and accepted values.
    fn option(out: &mut String, arg: &Arg) {
        let takes_values = arg.get_action().takes_values();
        let names: Vec<String> = arg
            .get_value_names()
            .map(|v| v.iter().map(ToString::to_string).collect())
            .unwrap_or_else(|| vec![arg.get_id().as_str().to_uppercase()]);
        let values = names
            .iter()
            .map(|n| format!("<{n}>"))
            .collect::<Vec<_>>()
            .join(" ");
        let syntax = if arg.is_positional() {
            values
        } else {
            let mut s = match (arg.get_short(), arg.get_long()) {
                (Some(short), Some(long)) => format!("-{short}, --{long}"),
                (Some(short), None) => format!("-{short}"),
                (None, long) => format!("--{}", long.unwrap_or_default()),
            };
            if takes_values {
                let _ = write!(s, " {values}");
            }
            s
        };
        let _ = writeln!(out, "#### `{syntax}`\n");
        let help = arg.get_long_help().or(arg.get_help());
        if let Some(help) = help {
            let _ = writeln!(out, "{}\n", help_text(&help.to_string()));
        }
        let mut facts = Vec::new();
        if arg.is_required_set() {
            facts.push("Required.".to_owned());
        }
        if let Some(env) = arg.get_env().filter(|_| !arg.is_hide_env_set()) {
            facts.push(format!("Environment: `{}`.", env.to_string_lossy()));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect();
        if takes_values && !defaults.is_empty() && !arg.is_hide_default_value_set() {
            facts.push(format!("Default: {}.", defaults.join(", ")));
        }
        if !facts.is_empty() {
            let _ = writeln!(out, "{}\n", facts.join(" "));
        }
        let possible: Vec<_> = arg
            .get_possible_values()
            .into_iter()
            .filter(|p| !p.is_hide_set())
            .collect();
        if takes_values && !possible.is_empty() && !arg.is_hide_possible_values_set() {
            out.push_str("Values:\n\n");
            for p in possible {
                match p.get_help() {
                    Some(help) => {
                        let help = cell(&help_text(&help.to_string()));
                        let _ = writeln!(out, "- `{}`: {help}", p.get_name());
                    }
                    None => {
                        let _ = writeln!(out, "- `{}`", p.get_name());
                    }
                }
            }
            out.push('\n');
        }
    }
}

#[test]
fn cli_reference_is_current() {
    check_page("reference/cli.md", &cli::render());
}

// ---------------------------------------------------------------------------
// gRPC API

mod grpc {
    use super::*;
    use protox::prost_reflect::prost_types::source_code_info::Location;
    use protox::prost_reflect::{
        DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
        ServiceDescriptor,
    };

    const FILE: &str = "stepup/v1/decision.proto";

    /// The comments of one file, by the path of the element they document.
    struct Comments(BTreeMap<Vec<i32>, Location>);

    impl Comments {
        fn of(file: &FileDescriptor) -> Self {
            let locations = file
                .file_descriptor_proto()
                .source_code_info
                .as_ref()
                .map(|s| s.location.clone())
                .unwrap_or_default();
            Self(locations.into_iter().map(|l| (l.path.clone(), l)).collect())
        }

        /// The leading comment of the element at `path` (then its trailing
        /// one), as Markdown: the space after `//` removed.
        fn get(&self, path: &[i32]) -> String {
            let Some(l) = self.0.get(path) else {
                return String::new();
            };
            let text = l
                .leading_comments
                .as_deref()
                .or(l.trailing_comments.as_deref())
                .unwrap_or_default();
            text.lines()
                .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_owned()
        }
    }

    /// The page: the file's own comment, then its services, messages and
    /// enums in the order of the file.
    pub fn render() -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
        let pool: DescriptorPool = protox::Compiler::new([&root])
            .unwrap()
            .include_source_info(true)
            .include_imports(true)
            .open_files([FILE])
            .unwrap()
            .descriptor_pool();
        let file = pool.get_file_by_name(FILE).unwrap();
        let comments = Comments::of(&file);
        let mut out = generated_from(&format!("proto/{FILE} and its comments"));
        out.push_str("# gRPC reference\n\n");
        let _ = writeln!(
            out,
            "Package `{}`, defined in [`proto/{FILE}`](../../../proto/{FILE}).\n",
            file.package_name()
        );
        // The comment above `syntax` (field 12 of FileDescriptorProto).
        let intro = comments.get(&[12]);
        if !intro.is_empty() {
            let _ = writeln!(out, "{intro}\n");
        }
        out.push_str("## Services\n\n");
        for service in file.services() {
            render_service(&mut out, &service, &comments);
        }
        out.push_str("## Messages\n\n");
        for message in file.messages() {
            render_message(&mut out, &message, &comments);
        }
        out.push_str("## Enums\n\n");
        for en in file.enums() {
            render_enum(&mut out, &en, &comments);
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }

    fn render_service(out: &mut String, service: &ServiceDescriptor, comments: &Comments) {
        let _ = writeln!(out, "### `{}`\n", service.name());
        paragraph(out, &comments.get(service.path()));
        for method in service.methods() {
            let stream = |s: bool| if s { "stream " } else { "" };
            let _ = writeln!(out, "#### `{}`\n", method.name());
            let _ = writeln!(
                out,
                "Request: {}{}. Response: {}{}. Path: `/{}/{}`.\n",
                stream(method.is_client_streaming()),
                message_link(&method.input()),
                stream(method.is_server_streaming()),
                message_link(&method.output()),
                service.full_name(),
                method.name(),
            );
            paragraph(out, &comments.get(method.path()));
        }
    }

    fn render_message(out: &mut String, message: &MessageDescriptor, comments: &Comments) {
        let _ = writeln!(out, "### `{}`\n", message.name());
        paragraph(out, &comments.get(message.path()));
        if message.fields().len() == 0 {
            out.push_str("No fields.\n\n");
        } else {
            out.push_str("| field | number | type | description |\n| --- | --- | --- | --- |\n");
            for field in message.fields() {
                let mut description = comments.get(field.path());
                if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic()) {
                    description = format!("One of `{}`. {description}", oneof.name());
                }
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    field.name(),
                    field.number(),
                    field_type(&field),
                    cell(&description)
                );
            }
            out.push('\n');
        }
        for nested in message.child_messages().filter(|m| !m.is_map_entry()) {
            render_message(out, &nested, comments);
        }
        for en in message.child_enums() {
            render_enum(out, &en, comments);
        }
    }

    fn render_enum(out: &mut String, en: &EnumDescriptor, comments: &Comments) {
        let _ = writeln!(out, "### `{}`\n", en.name());
        paragraph(out, &comments.get(en.path()));
        out.push_str("| value | number | description |\n| --- | --- | --- |\n");
        for value in en.values() {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                value.name(),
                value.number(),
                cell(&comments.get(value.path()))
            );
        }
        out.push('\n');
    }

    fn paragraph(out: &mut String, text: &str) {
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
    }

    /// A link to a message of this page, or the name of an imported one.
    fn message_link(message: &MessageDescriptor) -> String {
        type_link(
            message.full_name(),
            message.name(),
            message.parent_file().name(),
        )
    }

    fn type_link(full_name: &str, name: &str, file: &str) -> String {
        if file == FILE {
            format!("[`{name}`](#{})", name.to_lowercase())
        } else {
            format!("`{full_name}`")
        }
    }

    fn field_type(field: &FieldDescriptor) -> String {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                unreachable!("a map field's kind is its entry message")
            };
            let key = entry.map_entry_key_field();
            let value = entry.map_entry_value_field();
            // `map<K, V>` in one code span unless V is a type of this page.
            return match value.kind() {
                Kind::Message(m) if m.parent_file().name() == FILE => {
                    format!("`map<{}, `{}`>`", plain(&key), kind_name(&value))
                }
                Kind::Enum(e) if e.parent_file().name() == FILE => {
                    format!("`map<{}, `{}`>`", plain(&key), kind_name(&value))
                }
                _ => format!("`map<{}, {}>`", plain(&key), plain(&value)),
            };
        }
        let label = if field.is_list() {
            "repeated "
        } else if field.containing_oneof().is_some_and(|o| o.is_synthetic()) {
            "optional "
        } else {
            ""
        };
        format!("{label}{}", kind_name(field))
    }

    /// The type of `field` without markup: a scalar's proto name or a
    /// message's or enum's full name.
    fn plain(field: &FieldDescriptor) -> String {
        match field.kind() {
            Kind::Message(m) => m.full_name().to_owned(),
            Kind::Enum(e) => e.full_name().to_owned(),
            _ => {
                let ty = field.field_descriptor_proto().r#type();
                ty.as_str_name().trim_start_matches("TYPE_").to_lowercase()
            }
        }
    }

    fn kind_name(field: &FieldDescriptor) -> String {
        match field.kind() {
            Kind::Message(m) => message_link(&m),
            Kind::Enum(e) => type_link(e.full_name(), e.name(), e.parent_file().name()),
            _ => format!("`{}`", plain(field)),
        }
    }
}

#[test]
fn grpc_reference_is_current() {
    check_page("api/grpc.md", &grpc::render());
}

// ---------------------------------------------------------------------------
// Config file

mod config {
    use super::*;
    use stepup::internal::{CONFIG_KEYS, KeyDoc, KeyKind};

    /// The page: the top-level keys, then a section per table, in the
    /// order of the key table.
    pub fn render() -> String {
        let mut out = generated_from("the config key table (src/config/keys.rs)");
        out.push_str(
            "# Configuration\n\n\
             `stepup serve --config FILE` (or `STEPUP_CONFIG`) reads a TOML file; `check`, `eval`, \
             `test` and `replay` read its `[lists]` and `[limits]` with `--config` too. Flags beat \
             `STEPUP_*` environment variables, which beat the config file, which beats the \
             defaults ([command line](cli.md)). Every key is optional; unknown keys are rejected, \
             and every unknown or mistyped key is reported with its line before the server gives \
             up.\n\n\
             A *duration* is a string of a number and a unit: `\"500ms\"`, `\"30s\"`, `\"5m\"`, \
             `\"24h\"`, `\"90d\"`. In a path, `<name>` stands for a key you choose.\n\n",
        );
        section(&mut out, "", "Top-level keys", "");
        for table in CONFIG_KEYS
            .iter()
            .filter(|k| matches!(k.kind, KeyKind::Table | KeyKind::Tables))
        {
            section(
                &mut out,
                table.key,
                &format!("`{}`", header(table)),
                table.doc,
            );
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }

    /// `[a.b]` or `[[a.b]]`, as the table is written in TOML.
    fn header(table: &KeyDoc) -> String {
        let path = table.key.replace("[]", "");
        match table.kind {
            KeyKind::Tables => format!("[[{path}]]"),
            _ => format!("[{path}]"),
        }
    }

    /// The id mdBook gives a heading with `text`.
    fn anchor(text: &str) -> String {
        text.chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '_' || c == '-' => {
                    Some(c.to_lowercase().next().unwrap_or(c))
                }
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect()
    }

    fn link_to(table: &KeyDoc) -> String {
        let header = header(table);
        format!("[`{header}`](#{})", anchor(&header))
    }

    /// The documented keys directly in the table at `path`.
    fn children(path: &str) -> impl Iterator<Item = (&'static str, &'static KeyDoc)> + '_ {
        let array = CONFIG_KEYS
            .iter()
            .any(|k| k.key == path && k.kind == KeyKind::Tables);
        let prefix = match (path.is_empty(), array) {
            (true, _) => String::new(),
            (false, true) => format!("{path}[]."),
            (false, false) => format!("{path}."),
        };
        CONFIG_KEYS.iter().filter_map(move |k| {
            k.key
                .strip_prefix(prefix.as_str())
                .filter(|rest| !rest.contains('.'))
                .map(|rest| (rest, k))
        })
    }

    fn section(out: &mut String, path: &str, title: &str, doc: &str) {
        let _ = writeln!(out, "## {title}\n");
        if !doc.is_empty() {
            let _ = writeln!(out, "{doc}\n");
        }
        out.push_str(
            "| key | type | default | flag, environment | description |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        for (name, key) in children(path) {
            let name = name.trim_end_matches("[]");
            let (ty, doc) = match key.kind {
                KeyKind::Value(ty) => (ty.to_owned(), key.doc.to_owned()),
                KeyKind::Table | KeyKind::Tables => {
                    let what = if key.kind == KeyKind::Tables {
                        "array of tables"
                    } else {
                        "table"
                    };
                    (what.to_owned(), format!("See {}.", link_to(key)))
                }
                KeyKind::Like(other) => {
                    let other = CONFIG_KEYS.iter().find(|k| k.key == other).unwrap();
                    (
                        format!("table: the keys of {}", link_to(other)),
                        key.doc.to_owned(),
                    )
                }
            };
            let set_by: Vec<String> = [key.flag, key.env]
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(|s| format!("`{s}`"))
                .collect();
            let _ = writeln!(
                out,
                "| `{name}` | {} | {} | {} | {} |",
                cell(&ty),
                cell(&default(key.default)),
                set_by.join(", "),
                cell(&doc)
            );
        }
        out.push('\n');
    }

    /// A default as a code span when it is a TOML value, else in words
    /// (a leading TOML value in a code span).
    fn default(text: &str) -> String {
        let is_toml = |s: &str| toml::from_str::<toml::Table>(&format!("v = {s}")).is_ok();
        if text.is_empty() {
            return String::new();
        }
        if is_toml(text) {
            return format!("`{text}`");
        }
        match text.split_once(' ') {
            Some((first, rest)) if is_toml(first) => format!("`{first}` {rest}"),
            _ => text.to_owned(),
        }
    }
}

#[test]
fn config_reference_is_current() {
    check_page("reference/config.md", &config::render());
}

/// The flags and environment variables the key table names are those of
/// `stepup serve`.
#[test]
fn config_keys_name_real_flags() {
    use clap::CommandFactory as _;
    let cli = stepup::cli::Cli::command();
    let serve = cli.find_subcommand("serve").unwrap();
    for key in stepup::internal::CONFIG_KEYS
        .iter()
        .filter(|k| !k.flag.is_empty())
    {
        let long = key.flag.trim_start_matches("--");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap_or_else(|| panic!("`{}`: `stepup serve` has no `{}`", key.key, key.flag));
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(
            env.as_deref(),
            Some(key.env),
            "`{}`: `{}` reads another environment variable",
            key.key,
            key.flag
        );
    }
}

/// The exit-code page (written by hand: the codes' meanings per command are
/// prose) has a section for every command, and each section's codes are the
/// ones the crate defines.
#[test]
fn exit_code_page_covers_every_command() {
    use clap::CommandFactory as _;
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src/reference/exit-codes.md"),
    )
    .unwrap();
    let known = [
        stepup::cli::EXIT_OK,
        stepup::cli::EXIT_FAILED,
        stepup::cli::EXIT_USAGE,
        stepup::cli::EXIT_INVALID_POLICY,
        stepup::cli::EXIT_RUNTIME,
    ];
    for command in stepup::cli::Cli::command().get_subcommands() {
        let name = command.get_name();
        let heading = format!("### `stepup {name}`\n");
        let start = page
            .find(&heading)
            .unwrap_or_else(|| panic!("exit-codes.md has no section `{}`", heading.trim()));
        let section = &page[start + heading.len()..];
        let section = &section[..section.find("\n#").unwrap_or(section.len())];
        let codes: Vec<u8> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next()?.parse().ok())
            .collect();
        assert!(!codes.is_empty(), "`stepup {name}`: no codes listed");
        for code in codes {
            assert!(
                known.contains(&code),
                "`stepup {name}`: unknown exit code {code}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Metrics

mod metrics {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use opentelemetry_proto::tonic::metrics::v1::Metric;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use stepup::proto::v1::{DecideRequest, Resource, Subject};

    /// Labels a build may add to a family: `stepup_build_info` carries
    /// `revision` and `rustc` when the build recorded them, so the page
    /// lists them whether or not this build did.
    const OPTIONAL_LABELS: &[(&str, &[&str])] = &[("stepup_build_info", &["revision", "rustc"])];

    use common::otlp::Collector;

    /// A metric family of the Prometheus exposition.
    #[derive(Default)]
    struct Family {
        kind: String,
        unit: String,
        help: String,
        labels: Vec<String>,
        sampled: bool,
    }

    /// What a real `stepup serve` exports, after traffic that gives every
    /// family a sample and every instrument a data point: its `/metrics`
    /// in the text format and in OpenMetrics, and its OTLP metrics.
    struct Exported {
        text: String,
        openmetrics: String,
        otlp: Vec<Metric>,
    }

    /// Serves the example policies with a shared history backend (Redis
    /// on a closed port: the backend's families are exported all the
    /// same), the admin listener and OTLP export to a collector of this
    /// test; decides requests that match a rule and fail one, calls a
    /// method that does not exist, then scrapes.
    fn export() -> Exported {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let collector = Collector::default();
        let otlp = collector.start(&rt);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stepup.toml");
        let closed = common::free_port();
        std::fs::write(
            &config,
            format!(
                "[history]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{closed}/\"\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", common::free_port());
        let admin = format!("127.0.0.1:{}", common::free_port());
        // Killed when dropped, even if the test fails half-way.
        let mut child = common::redis::Killed(
            Command::new(env!("CARGO_BIN_EXE_stepup"))
                .args(["serve", "--listen", &addr, "--admin", &admin, "--config"])
                .arg(&config)
                .arg("--policies")
                .arg(common::examples())
                .env("STEPUP_HISTORY_HASH_KEY", "docs-reference-test-key")
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
                .env("OTEL_METRIC_EXPORT_INTERVAL", "100")
                .env("OTEL_TRACES_EXPORTER", "none")
                .env("OTEL_LOGS_EXPORTER", "none")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        rt.block_on(async {
            let mut client = common::connect_when_up(&mut child.0, &addr).await;
            // The histograms are recorded once export has started.
            wait_for(&collector, &["stepup.decisions"], false).await;
            let request = |action: &str| DecideRequest {
                action: action.into(),
                subject: Some(Subject {
                    id: "alice".into(),
                    ..Default::default()
                }),
                resource: Some(Resource::default()),
                ..Default::default()
            };
            // Matches `password-change`.
            client
                .decide(request("account.password.change"))
                .await
                .unwrap();
            // `prod-environment-delete` reads an attribute that is not
            // there: an evaluation error.
            client.decide(request("environments.delete")).await.unwrap();
            let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let status = common::raw_call(
                channel,
                &addr,
                "/stepup.v1.DecisionService/NoSuchMethod",
                common::frame(&[]),
            )
            .await;
            assert_eq!(status.code(), tonic::Code::Unimplemented);
            // An HTTP request on the gRPC port (the HTTP endpoints served
            // there count their requests by route), whatever it answers.
            let grpc_port = addr.clone();
            tokio::task::spawn_blocking(move || {
                http_request(&grpc_port, "/.well-known/authzen-configuration")
            })
            .await
            .unwrap();
            wait_for(
                &collector,
                &[
                    "stepup.decision.duration",
                    "rpc.server.call.duration",
                    "stepup.rule.matches",
                    "stepup.rule.errors",
                ],
                true,
            )
            .await;
        });
        let exported = Exported {
            text: scrape(&admin, "text/plain"),
            openmetrics: scrape(&admin, "application/openmetrics-text"),
            otlp: collector.metrics.lock().unwrap().clone(),
        };
        drop(child);
        exported
    }

    /// Waits until the collector holds a data point of every instrument
    /// of `names`, and one of `rpc.server.call.duration` with `error.type`
    /// when `failed_call` (an export follows the traffic by up to an
    /// interval).
    async fn wait_for(collector: &Collector, names: &[&str], failed_call: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = {
                let metrics = collector.metrics.lock().unwrap();
                let has = |name: &&str| {
                    metrics
                        .iter()
                        .any(|m| m.name == *name && data_points(m) > 0)
                };
                let error_typed = metrics.iter().any(|m| {
                    m.name == "rpc.server.call.duration"
                        && instrument(m).1.iter().any(|k| k == "error.type")
                });
                names.iter().all(has) && (error_typed || !failed_call)
            };
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no OTLP export of {names:?} (with `error.type`: {failed_call})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn data_points(m: &Metric) -> usize {
        match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        }
    }

    /// GET `path` on `addr` over HTTP/1.1, reading the answer if there is
    /// one (a server may also close the connection).
    fn http_request(addr: &str, path: &str) {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read_to_end(&mut Vec::new());
    }

    /// GET `/metrics` with `accept`: the body.
    fn scrape(admin: &str, accept: &str) -> String {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    }

    /// The label names of a sample line, in order.
    fn label_names(labels: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = labels;
        while let Some((name, after)) = rest.split_once("=\"") {
            names.push(name.trim_start_matches(',').trim().to_owned());
            // Skip the value, escapes included.
            let mut escaped = false;
            let end = after
                .char_indices()
                .find(|&(_, c)| {
                    let closes = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                })
                .map_or(after.len(), |(i, _)| i + 1);
            rest = &after[end..];
        }
        names
    }

    /// The families of a text-format exposition, with the units its
    /// OpenMetrics form declares.
    fn families(text: &str, openmetrics: &str) -> BTreeMap<String, Family> {
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut order = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                order.push(name.to_owned());
                families.entry(name.to_owned()).or_default().help = help.to_owned();
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                families.entry(name.to_owned()).or_default().kind = kind.to_owned();
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let name = &line[..end];
                let family = [name, strip_any(name, &["_bucket", "_sum", "_count"])]
                    .into_iter()
                    .find(|n| families.contains_key(*n))
                    .unwrap_or_else(|| panic!("a sample of no family: {line}"))
                    .to_owned();
                let f = families.get_mut(&family).unwrap();
                f.sampled = true;
                if let Some(labels) = line[end..].strip_prefix('{') {
                    let labels = labels.rsplit_once('}').map_or(labels, |(l, _)| l);
                    for label in label_names(labels) {
                        if label != "le" && !f.labels.contains(&label) {
                            f.labels.push(label);
                        }
                    }
                }
            }
        }
        // OpenMetrics names a counter's family without `_total`.
        for line in openmetrics.lines() {
            if let Some(rest) = line.strip_prefix("# UNIT ") {
                let (name, unit) = rest.split_once(' ').unwrap();
                let family = [name.to_owned(), format!("{name}_total")]
                    .into_iter()
                    .find(|n| families.contains_key(n))
                    .unwrap();
                families.get_mut(&family).unwrap().unit = unit.to_owned();
            }
        }
        for (family, labels) in OPTIONAL_LABELS {
            if let Some(f) = families.get_mut(*family) {
                for label in *labels {
                    if !f.labels.iter().any(|l| l == label) {
                        f.labels.push((*label).to_owned());
                    }
                }
            }
        }
        families
    }

    fn strip_any<'a>(name: &'a str, suffixes: &[&str]) -> &'a str {
        suffixes
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name)
    }

    /// An OTLP instrument: kind and the attribute keys of its data points.
    fn instrument(m: &Metric) -> (&'static str, Vec<String>) {
        let mut keys: Vec<String> = Vec::new();
        let mut add = |attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            for kv in attributes {
                if !keys.contains(&kv.key) {
                    keys.push(kv.key.clone());
                }
            }
        };
        let kind = match &m.data {
            Some(Data::Sum(s)) => {
                s.data_points.iter().for_each(|p| add(&p.attributes));
                if s.is_monotonic {
                    "counter"
                } else {
                    "up-down counter"
                }
            }
            Some(Data::Gauge(g)) => {
                g.data_points.iter().for_each(|p| add(&p.attributes));
                "gauge"
            }
            Some(Data::Histogram(h)) => {
                h.data_points.iter().for_each(|p| add(&p.attributes));
                "histogram"
            }
            other => panic!("`{}`: an instrument of unexpected kind {other:?}", m.name),
        };
        keys.sort();
        (kind, keys)
    }

    pub fn render() -> String {
        let exported = export();
        let families = families(&exported.text, &exported.openmetrics);
        let mut out = generated_from("the metrics a running `stepup serve` exports");
        out.push_str(
            "# Metrics\n\n\
             Every metric `stepup serve` exports, as a running server exports it (see \
             [Admin endpoints and metrics](../operations/admin.md) for what they are for).\n\n\
             ## Prometheus\n\n\
             On the admin listener's `/metrics`: the Prometheus text format 0.0.4, or \
             OpenMetrics 1.0 when the scraper asks for it (where a counter's family is named \
             without `_total`). The `stepup_history_publish_*` and \
             `stepup_history_records_rejected_total` families are there with a shared history \
             backend only, the `process_*` ones on Linux only.\n\n\
             | metric | type | unit | labels | description |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        // In the order of the exposition.
        for line in exported.text.lines() {
            let Some(rest) = line.strip_prefix("# HELP ") else {
                continue;
            };
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            let f = &families[name];
            assert!(
                f.sampled,
                "`{name}` has no sample: give it one in this test, so that its labels are documented"
            );
            let labels: Vec<String> = f.labels.iter().map(|l| format!("`{l}`")).collect();
            let _ = writeln!(
                out,
                "| `{name}` | {} | {} | {} | {} |",
                f.kind,
                f.unit,
                labels.join(", "),
                cell(&f.help)
            );
        }
        out.push_str(
            "\n## OpenTelemetry (OTLP)\n\n\
             Exported when `OTEL_EXPORTER_OTLP_ENDPOINT` (or \
             `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) is set, every \
             `OTEL_METRIC_EXPORT_INTERVAL` (`OTEL_METRICS_EXPORTER=none` opts out). Attributes \
             are those of the data points; `error.type` is set on calls that ended in a \
             server-failure status.\n\n\
             | instrument | kind | unit | attributes | description |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        // Each export repeats the instruments: their kinds and the union
        // of their attributes, by name.
        let mut instruments: BTreeMap<&str, (&Metric, &'static str, Vec<String>)> = BTreeMap::new();
        for m in &exported.otlp {
            let (kind, attributes) = instrument(m);
            let entry = instruments.entry(&m.name).or_insert((m, kind, Vec::new()));
            for a in attributes {
                if !entry.2.contains(&a) {
                    entry.2.push(a);
                }
            }
        }
        for (name, (m, kind, mut attributes)) in instruments {
            attributes.sort();
            let attributes: Vec<String> = attributes.iter().map(|a| format!("`{a}`")).collect();
            let _ = writeln!(
                out,
                "| `{name}` | {kind} | `{}` | {} | {} |",
                m.unit,
                attributes.join(", "),
                cell(&m.description)
            );
        }
        out
    }
}

#[test]
#[cfg(target_os = "linux")] // the `process_*` metrics are read from /proc
fn metrics_reference_is_current() {
    check_page("reference/metrics.md", &metrics::render());
}
