//! Exclude patterns of a folder backup: which entries under a backed-up folder are left out.
//!
//! A pattern is matched against an entry's path relative to the backed-up folder, with `/`
//! between folders, as gitignore does it:
//! - with no `/` but a trailing one (`*.tmp`, `.cache`), it matches an entry's name at any
//!   depth; with a `/` elsewhere (`cache/**`, `/upload.log`), the path from the folder;
//! - a trailing `/` matches folders only;
//! - `*` matches any characters but `/`, `?` one character, `[abc]` / `[a-z]` / `[!abc]` one
//!   character of (or not of) a class, `\` makes the next character literal, and a `**`
//!   between slashes any number of folders (`cache/**` is everything in `cache`).
//!
//! An excluded folder is not entered. Pure logic over names; the walk is
//! [`crate::archiver`]'s. It must not touch the file system.

use std::borrow::Cow;

/// A set of compiled exclude patterns; empty excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Matched against the last component only.
    name_only: bool,
    /// Matches folders only.
    dirs_only: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    /// `**`: any number of components, none included.
    AnyFolders,
    Component(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Excludes {
    /// Compiles `patterns`.
    ///
    /// # Errors
    /// The first pattern that is not valid, with what is wrong with it.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Excludes, String> {
        let patterns = patterns
            .iter()
            .map(|p| parse(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Excludes { patterns })
    }

    /// Whether there are no patterns.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the entry `name` of the folder `folder` (relative to the backed-up folder, `/`
    /// between folders, empty for the backed-up folder itself) is left out.
    #[must_use]
    pub fn excludes(&self, folder: &[u8], name: &[u8], is_dir: bool) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let name = String::from_utf8_lossy(name);
        let mut path: Vec<Cow<'_, str>> = folder
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(String::from_utf8_lossy)
            .collect();
        path.push(name);
        self.patterns.iter().any(|p| {
            (is_dir || !p.dirs_only)
                && if p.name_only {
                    matches_parts(&p.parts, &path[path.len() - 1..])
                } else {
                    matches_parts(&p.parts, &path)
                }
        })
    }
}

/// Checks one pattern's syntax.
///
/// # Errors
/// What is wrong with it, and how to write it instead.
pub fn check(pattern: &str) -> Result<(), String> {
    parse(pattern).map(|_| ())
}

fn parse(pattern: &str) -> Result<Pattern, String> {
    if pattern.is_empty() {
        return Err("an empty exclude pattern; e.g. \"*.tmp\" or \"cache/**\"".into());
    }
    if pattern.contains('\0') {
        return Err("an exclude pattern cannot contain a NUL character".into());
    }
    // Tokens and component breaks, escapes resolved.
    let mut comps: Vec<Vec<Token>> = vec![Vec::new()];
    // Which components were exactly `**` as written (not `\*\*`).
    let mut double: Vec<bool> = vec![false];
    let mut chars = pattern.chars().peekable();
    let mut cur_raw = String::new();
    while let Some(c) = chars.next() {
        let comp = comps.last_mut().ok_or("internal: no component")?;
        match c {
            '/' => {
                let is_double = cur_raw == "**";
                if let Some(d) = double.last_mut() {
                    *d = is_double;
                }
                cur_raw.clear();
                comps.push(Vec::new());
                double.push(false);
                continue;
            }
            '\\' => match chars.next() {
                Some(d) => {
                    comp.push(Token::Char(d));
                    cur_raw.push('\\');
                    cur_raw.push(d);
                    continue;
                }
                None => return Err(format!("`{pattern}` ends with a lone `\\`")),
            },
            '*' => comp.push(Token::Any),
            '?' => comp.push(Token::One),
            '[' => {
                let mut negated = false;
                let mut ranges = Vec::new();
                let mut first = true;
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == ']' && !first {
                        closed = true;
                        break;
                    }
                    if first && (d == '!' || d == '^') && !negated {
                        negated = true;
                        continue;
                    }
                    first = false;
                    let lo = d;
                    if chars.peek() == Some(&'-') {
                        let mut ahead = chars.clone();
                        ahead.next();
                        match ahead.peek() {
                            Some(&hi) if hi != ']' => {
                                chars.next();
                                chars.next();
                                ranges.push((lo, hi));
                                continue;
                            }
                            _ => {}
                        }
                    }
                    ranges.push((lo, lo));
                }
                if !closed {
                    return Err(format!(
                        "`{pattern}` has an unclosed `[`; write `\\[` for a literal bracket"
                    ));
                }
                comp.push(Token::Class { negated, ranges });
            }
            c => comp.push(Token::Char(c)),
        }
        cur_raw.push(c);
    }
    if let Some(d) = double.last_mut() {
        *d = cur_raw == "**";
    }
    let dirs_only = comps.len() > 1 && comps.last().is_some_and(Vec::is_empty);
    if dirs_only {
        comps.pop();
        double.pop();
    }
    let anchored_root = comps.len() > 1 && comps.first().is_some_and(Vec::is_empty);
    if anchored_root {
        comps.remove(0);
        double.remove(0);
    }
    if comps.iter().any(Vec::is_empty) {
        return Err(format!(
            "`{pattern}` has an empty folder name (`//`, or only `/`); e.g. \"cache/**\""
        ));
    }
    let name_only = comps.len() == 1 && !anchored_root;
    let parts = comps
        .into_iter()
        .zip(double)
        .map(|(t, d)| {
            if d {
                Part::AnyFolders
            } else {
                Part::Component(t)
            }
        })
        .collect();
    Ok(Pattern {
        name_only,
        dirs_only,
        parts,
    })
}

/// Whether `parts` match the whole of `path`.
fn matches_parts(parts: &[Part], path: &[Cow<'_, str>]) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        // A trailing `**` is what is inside (`cache/**` leaves the folder itself).
        Some((Part::AnyFolders, [])) => !path.is_empty(),
        Some((Part::AnyFolders, rest)) => {
            (0..=path.len()).any(|skip| matches_parts(rest, &path[skip..]))
        }
        Some((Part::Component(tokens), rest)) => match path.split_first() {
            Some((c, more)) => matches_component(tokens, c) && matches_parts(rest, more),
            None => false,
        },
    }
}

/// Whether `tokens` match the whole of one path component.
fn matches_component(tokens: &[Token], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    // The classic two-pointer match with one backtrack point for the last `*`.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(tok) if one(tok, name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    tokens[t.min(tokens.len())..]
        .iter()
        .all(|tok| *tok == Token::Any)
}

fn one(tok: &Token, c: char) -> bool {
    match tok {
        Token::Char(x) => *x == c,
        Token::One => true,
        Token::Any => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        Excludes::new(patterns).unwrap()
    }

    /// `path` split into folder and name.
    fn is_out(e: &Excludes, path: &str, is_dir: bool) -> bool {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
        e.excludes(folder.as_bytes(), name.as_bytes(), is_dir)
    }

    #[test]
    fn a_pattern_without_a_slash_matches_names_at_any_depth() {
        let e = ex(&["*.tmp"]);
        assert!(is_out(&e, "a.tmp", false));
        assert!(is_out(&e, "x/y/a.tmp", false));
        assert!(is_out(&e, "x/y.tmp", true));
        assert!(!is_out(&e, "a.tmp.jpg", false));
        assert!(!is_out(&e, "x.tmp/a.jpg", false));
        let e = ex(&[".cache"]);
        assert!(is_out(&e, "u/.cache", true) && !is_out(&e, "u/.cachex", true));
    }

    #[test]
    fn a_pattern_with_a_slash_is_anchored_at_the_folder() {
        let e = ex(&["cache/**"]);
        assert!(is_out(&e, "cache/a", false));
        assert!(is_out(&e, "cache/a/b", true));
        assert!(
            !is_out(&e, "cache", true),
            "the folder itself stays (empty)"
        );
        assert!(!is_out(&e, "x/cache/a", false));
        let e = ex(&["/upload.log"]);
        assert!(is_out(&e, "upload.log", false) && !is_out(&e, "x/upload.log", false));
        let e = ex(&["thumbnails/**/*.webp"]);
        assert!(is_out(&e, "thumbnails/a.webp", false));
        assert!(is_out(&e, "thumbnails/2024/05/a.webp", false));
        assert!(!is_out(&e, "thumbnails/2024/a.jpg", false));
        assert!(!is_out(&e, "other/thumbnails/a.webp", false));
        let e = ex(&["**/tmp"]);
        assert!(is_out(&e, "tmp", true) && is_out(&e, "a/b/tmp", true));
        let e = ex(&["a/*/c"]);
        assert!(is_out(&e, "a/b/c", false) && !is_out(&e, "a/b/x/c", false));
    }

    #[test]
    fn a_trailing_slash_matches_folders_only() {
        let e = ex(&["build/"]);
        assert!(is_out(&e, "x/build", true));
        assert!(!is_out(&e, "x/build", false));
        let e = ex(&["a/build/"]);
        assert!(is_out(&e, "a/build", true) && !is_out(&e, "a/build", false));
    }

    #[test]
    fn classes_wildcards_and_escapes() {
        let e = ex(&[
            "img[0-9].png",
            "[!a-z]*.log",
            "?.bak",
            r"\*literal",
            "x[]]y",
        ]);
        assert!(is_out(&e, "img7.png", false) && !is_out(&e, "imgA.png", false));
        assert!(is_out(&e, "Z1.log", false) && !is_out(&e, "a1.log", false));
        assert!(
            is_out(&e, "é.bak", false),
            "? is one character, not one byte"
        );
        assert!(!is_out(&e, "ab.bak", false));
        assert!(is_out(&e, "*literal", false) && !is_out(&e, "xliteral", false));
        assert!(is_out(&e, "x]y", false));
        let e = ex(&["a*b*c"]);
        assert!(is_out(&e, "abc", false) && is_out(&e, "a_b_b_c", false));
        assert!(!is_out(&e, "a_b_b_", false));
        let e = ex(&[r"\*\*/x"]);
        assert!(is_out(&e, "**/x", false) && !is_out(&e, "a/x", false));
        // A name that is not UTF-8 is still matched by `*`.
        let e = ex(&["*.raw"]);
        assert!(e.excludes(b"", b"\xff\xfe.raw", false));
    }

    #[test]
    fn empty_excludes_nothing() {
        let e = Excludes::default();
        assert!(e.is_empty() && !is_out(&e, "a", false));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (p, says) in [
            ("", "empty"),
            ("a\0b", "NUL"),
            ("abc\\", "lone"),
            ("img[0-9.png", "unclosed"),
            ("a//b", "empty folder"),
            ("/", "empty folder"),
        ] {
            let err = check(p).unwrap_err();
            assert!(err.contains(says), "{p:?}: {err}");
        }
        for p in ["*", "**", "a/", "/a", "[]]", "[!]]", "a-b", "[a-]"] {
            check(p).unwrap();
        }
    }

    proptest::proptest! {
        /// Any text either compiles or is refused, and matching never panics.
        #[test]
        fn parsing_and_matching_never_panic(p in "[a-c*?/\\[\\]!\\\\-]{0,12}", name in "[a-c*/]{0,8}") {
            if let Ok(e) = Excludes::new(&[p.as_str()]) {
                let _ = e.excludes(b"a/b", name.as_bytes(), true);
                let _ = e.excludes(b"", name.as_bytes(), false);
            }
        }

        /// A pattern of plain characters matches exactly that name.
        #[test]
        fn a_literal_matches_only_itself(lit in "[a-z.]{1,10}", other in "[a-z.]{1,10}") {
            let e = Excludes::new(&[lit.as_str()]).unwrap();
            proptest::prop_assert!(e.excludes(b"d", lit.as_bytes(), false));
            proptest::prop_assert_eq!(e.excludes(b"d", other.as_bytes(), false), other == lit);
        }
    }
}
