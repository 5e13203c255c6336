//! A bad scenario file is refused with the field at fault and the line and column of its value —
//! not the line of its table's header, nor another field of the same table.

use switchboard_sim::Scenario;

const HEAD: &str = "name = \"x\"\nduration_s = 10\n[[app]]\nname = \"a\"\nuser_count = 3\n[[app]]\nname = \"b\"\nuser_count = 3\n";

/// The line and column (from 1) where `needle` first starts in `text`.
fn place(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in {text}"));
    let before = &text[..offset];
    (before.matches('\n').count() + 1, offset - before.rfind('\n').map_or(0, |n| n + 1) + 1)
}

#[test]
fn a_bad_scenario_names_the_field_at_its_line_and_column() {
    // (the file after HEAD, the text the error must point at, the field it must name, words)
    let cases: &[(&str, &str, &str, &str)] = &[
        // Errors that used to point at another field of the table (its name, its apps, its relay)…
        ("[[app]]\nname = \"c\"\ndevices_per_user = 20\n", "20", "[[app]] #3 devices_per_user", "1 to 16"),
        ("[[link]]\napps = [\"a\", \"b\"]\ndrop = 0.9\n", "0.9", "[[link]] #1 drop", "0.5"),
        ("[[link]]\napps = [\"a\", \"b\"]\ndelay = { kind = \"uniform\", min_ms = 9, max_ms = 1 }\n", "{ kind", "[[link]] #1 delay", "min ≤ max"),
        ("[[crash]]\nrelay = \"a\"\nat_s = -1\n", "-1", "[[crash]] #1 at_s", "0 to"),
        ("[[app]]\nname = \"c\"\nuser_count = 4\n[app.access]\nreplay = 2\n", "2\n", "[[app]] #3 access.replay", "probability"),
        // …at the table's header…
        ("[[offline]]\ndevice = \"u1@a\"\nfor_s = -5\n", "-5", "[[offline]] #1 for_s", "0 to"),
        ("[channel]\napp = \"a\"\nfollowers = 2\nfollow_s = 1\nvotes = 3\n", "3\n", "[channel] votes", "at most followers"),
        ("[[partition]]\napps = [\"a\", \"b\"]\nfrom_s = 5\nuntil_s = 1\n", "1\n", "[[partition]] #1 until_s", "from_s ≤ until_s"),
        // …or at line 1.
        ("[traffic]\nmessages = 10\nsize = { min = 1, max = 100000 }\n", "100000", "[traffic] size.max", "min ≤ max"),
        ("[traffic]\nmessages = 12\ngroup_senders = 0\n", "0\n", "[traffic] group_senders", "at least 1"),
        // One item of an array.
        ("[[group]]\nsize = 2\napps = [\"a\", \"nowhere\"]\n", "\"nowhere\"", "[[group]] #1 apps #2", "unknown app \"nowhere\""),
        ("[[person]]\naccounts = [\"u0@a\", \"u9@b\"]\n", "\"u9@b\"", "[[person]] #1 accounts #2", "unknown user"),
        // What the TOML reader refuses is placed and named too.
        ("[[app]]\nname = \"c\"\nbogus = 1\n", "bogus", "[[app]] #3 bogus", "unknown field"),
        ("[[crash]]\nrelay = \"a\"\nat_s = \"soon\"\n", "\"soon\"", "[[crash]] #1 at_s", "invalid type"),
    ];
    for (tail, needle, field, words) in cases {
        let text = format!("{HEAD}{tail}");
        let error = Scenario::parse(&text).expect_err(&text);
        // The needle's first place after HEAD (HEAD's own text is valid).
        let (line, column) = place(tail, needle);
        let (want_line, want_column) = (line + HEAD.matches('\n').count(), column);
        assert_eq!((error.line, error.column), (want_line, want_column), "{text}\n→ {error}");
        assert_eq!(error.field.as_deref(), Some(*field), "{text}\n→ {error}");
        assert!(error.message.contains(words), "{text}\n→ {error}");
        assert!(error.to_string().starts_with(&format!("line {want_line}, column {want_column}: {field}: ")), "{error}");
    }
}

/// A top-level field is named and placed as well: `duration_s = 0` on line 2, not line 1.
#[test]
fn a_top_level_field_is_placed_at_its_own_line() {
    let text = "name = \"x\"\nduration_s = 0\n[[app]]\nname = \"a\"\nuser_count = 3\n";
    let error = Scenario::parse(text).unwrap_err();
    assert_eq!((error.line, error.column, error.field.as_deref()), (2, 14, Some("duration_s")), "{error}");
    assert_eq!(place(text, "0\n"), (2, 14));
}

/// A scenario made or changed in code has no file: its errors still name the field.
#[test]
fn a_scenario_made_in_code_is_refused_with_its_field() {
    let mut scenario = Scenario::parse(HEAD).unwrap();
    scenario.apps[1].devices_per_user = 0;
    let error = scenario.validate().unwrap_err();
    assert_eq!((error.line, error.column, error.field.as_deref()), (1, 1, Some("[[app]] #2 devices_per_user")), "{error}");
}
