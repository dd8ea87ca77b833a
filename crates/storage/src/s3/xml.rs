//! The two XML documents the S3 backend reads: a `ListObjectsV2` page and an error body.
//!
//! A deliberately small reader, not a general XML parser: it finds elements by name in the
//! flat documents S3 returns. It must never panic, whatever the bytes (the fuzz-like
//! property test below feeds it arbitrary input); what it cannot read is an error.

/// One object of a listing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One page of `ListObjectsV2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The objects on this page.
    pub objects: Vec<Listed>,
    /// The token for the next page, when the listing is truncated.
    pub next_token: Option<String>,
}

/// The parts of an S3 error body that are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// The error code, e.g. `NoSuchKey`, `AccessDenied`.
    pub code: String,
    /// The server's message.
    pub message: String,
}

/// The text of each `<tag>…</tag>` element in `doc`, in order (not nested in each other).
fn elements<'a>(doc: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn element<'a>(doc: &'a str, tag: &str) -> Option<&'a str> {
    elements(doc, tag).into_iter().next()
}

/// Replaces XML's character references (`&amp;`, `&#38;`, `&#x26;`, …).
///
/// # Errors
/// An unknown or malformed reference.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| format!("unterminated character reference in {s:?}"))?;
        let name = &after[..semi];
        let ch = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown character reference &{name}; in {s:?}"))?
            }
        };
        out.push(ch);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a `ListBucketResult` (`ListObjectsV2`) page.
///
/// # Errors
/// A description of what is missing or malformed.
pub fn list_page(doc: &str) -> Result<ListPage, String> {
    if !doc.contains("<ListBucketResult") {
        return Err("the answer is not a ListBucketResult document".into());
    }
    let mut page = ListPage::default();
    for contents in elements(doc, "Contents") {
        let key = element(contents, "Key").ok_or("an object without <Key>")?;
        let size = element(contents, "Size").ok_or("an object without <Size>")?;
        let size = size
            .trim()
            .parse()
            .map_err(|_| format!("object size {size:?} is not a number"))?;
        page.objects.push(Listed {
            key: unescape(key)?,
            size,
        });
    }
    let truncated = element(doc, "IsTruncated").map(str::trim) == Some("true");
    if truncated {
        let token = element(doc, "NextContinuationToken")
            .ok_or("a truncated listing without <NextContinuationToken>")?;
        page.next_token = Some(unescape(token)?);
    }
    Ok(page)
}

/// Reads an S3 `<Error>` body; an empty or unreadable one gives empty fields.
#[must_use]
pub fn error_body(body: &[u8]) -> ErrorBody {
    let doc = String::from_utf8_lossy(body);
    let doc = doc.as_ref();
    let text = |tag| {
        element(doc, tag)
            .map(|t| unescape(t).unwrap_or_else(|_| t.to_owned()))
            .unwrap_or_default()
    };
    ErrorBody {
        code: text("Code"),
        message: text("Message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>r/data/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>r/data/ab/abcd</Key><LastModified>2026-12-06T10:00:00.000Z</LastModified><ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>r/data/ab/a&amp;b</Key><Size>12345678901</Size></Contents><NextContinuationToken>1a+b/c=</NextContinuationToken></ListBucketResult>"#;

    #[test]
    fn a_page_gives_its_objects_and_next_token() {
        let page = list_page(PAGE).unwrap();
        assert_eq!(
            page.objects,
            vec![
                Listed {
                    key: "r/data/ab/abcd".into(),
                    size: 0
                },
                Listed {
                    key: "r/data/ab/a&b".into(),
                    size: 12_345_678_901
                },
            ]
        );
        assert_eq!(page.next_token.as_deref(), Some("1a+b/c="));
    }

    #[test]
    fn the_last_page_has_no_token() {
        let doc = PAGE.replace("<IsTruncated>true", "<IsTruncated>false");
        assert_eq!(list_page(&doc).unwrap().next_token, None);
        let empty = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(list_page(empty).unwrap(), ListPage::default());
    }

    #[test]
    fn malformed_pages_are_errors() {
        assert!(list_page("<Error><Code>AccessDenied</Code></Error>").is_err());
        assert!(list_page(&PAGE.replace("<Size>0</Size>", "<Size>x</Size>")).is_err());
        assert!(list_page(&PAGE.replace("<Size>0</Size>", "")).is_err());
        assert!(list_page(&PAGE.replace("<NextContinuationToken>", "<X>")).is_err());
        assert!(list_page(&PAGE.replace("&amp;", "&bogus;")).is_err());
    }

    #[test]
    fn character_references_are_replaced() {
        assert_eq!(unescape("a&lt;b&gt;&#38;&#x41;&apos;").unwrap(), "a<b>&A'");
        assert!(unescape("a&amp").is_err());
        assert!(unescape("&#xD800;").is_err());
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body = error_body(
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified \
             bucket does not exist</Message><BucketName>x</BucketName></Error>",
        );
        assert_eq!(body.code, "NoSuchBucket");
        assert_eq!(body.message, "The specified bucket does not exist");
        assert_eq!(error_body(b""), ErrorBody::default());
        assert_eq!(error_body(b"<Code>\xff</Code>").code, "\u{fffd}");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(doc in "(<ListBucketResult>|<Contents>|</Contents>|<Key>|</Key>|<Size>|</Size>|<IsTruncated>true</IsTruncated>|<NextContinuationToken>|</NextContinuationToken>|&|;|#x|[0-9a-z]|\\PC){0,40}") {
            let _ = list_page(&doc);
            let _ = error_body(doc.as_bytes());
        }
    }
}
