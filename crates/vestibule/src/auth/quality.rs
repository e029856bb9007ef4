//! Password quality as OWASP ASVS 5.0 chapter 6.2 and NIST SP 800-63B ask for it: a length
//! floor, a generous ceiling, any Unicode, no composition rules, and a refusal of passwords that
//! are common or contain the username. Each refusal has its own error code so a client can say
//! exactly what to change.

use std::io::Read as _;
use std::sync::LazyLock;

use crate::error::{Error, ErrorCode};

/// Fewest characters (Unicode scalar values) a new password may have: ASVS 6.2.1.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// The length the refusal message recommends (ASVS 6.2.1 recommends at least 15).
pub const RECOMMENDED_PASSWORD_CHARS: usize = 15;

/// Longest password accepted, in bytes: ASVS 6.2.9 asks for at least 64 characters; 1024 bytes
/// holds 256 four-byte characters while bounding what one request feeds Argon2.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Usernames shorter than this are not looked for inside passwords: a two-letter username
/// "inside" a passphrase reveals nothing and would refuse many good ones.
const MIN_USERNAME_CHARS_CHECKED: usize = 3;

/// Django's `CommonPasswordValidator` list (20,000 passwords from breach corpora, BSD-3-Clause;
/// provenance and licence in `assets/README.md`), compiled into the binary.
static COMMON_GZ: &[u8] = include_bytes!("../../assets/common-passwords.txt.gz");

/// The list, decompressed once on first use into one sorted block of text and the offsets of
/// its entries: about 220 KiB (142 KB of text, 4 bytes of offset per entry), where a
/// `HashSet<String>` of the same 19,640 entries held about 1.1 MiB (a 24-byte `String` and an
/// allocation per entry, plus a 32,768-slot table) for the life of the process.
struct CommonList {
    /// The entries, sorted and deduplicated, one after another with no separator.
    text: String,
    /// Where each entry starts in `text`, plus `text.len()` at the end.
    starts: Vec<u32>,
}

impl CommonList {
    fn decode(gz: &[u8]) -> Self {
        let mut raw = String::new();
        // The asset is part of the build: a failure here is a broken build, and an empty list
        // would only weaken the check, never lock anyone out; the unit test below proves it
        // decodes.
        if flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut raw)
            .is_err()
        {
            tracing::error!("the bundled common-password list does not decompress");
            raw.clear();
        }
        let mut entries: Vec<&str> = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        entries.sort_unstable();
        entries.dedup();
        let mut text = String::with_capacity(entries.iter().map(|e| e.len()).sum());
        let mut starts = Vec::with_capacity(entries.len() + 1);
        for e in &entries {
            starts.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            text.push_str(e);
        }
        starts.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        Self { text, starts }
    }

    fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    fn entry(&self, i: usize) -> &str {
        let at = |j: usize| self.starts.get(j).map_or(self.text.len(), |&s| s as usize);
        self.text.get(at(i)..at(i + 1)).unwrap_or("")
    }

    fn contains(&self, s: &str) -> bool {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid).cmp(s) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        false
    }
}

static COMMON: LazyLock<CommonList> = LazyLock::new(|| CommonList::decode(COMMON_GZ));

/// Number of passwords in the bundled list (forces its decompression).
pub fn common_password_count() -> usize {
    COMMON.len()
}

/// Whether `password` is on the common-password list (compared like Django: trimmed, lowercase).
pub fn is_common(password: &str) -> bool {
    COMMON.contains(&password.trim().to_lowercase())
}

/// Checks a new password for `username` with a minimum of `min_chars` characters.
///
/// # Errors
/// 422 with `password_too_short`, `password_too_long`, `password_too_common` or
/// `password_contains_username`, each with a message and a hint.
pub fn check(min_chars: usize, username: &str, password: &str) -> Result<(), Error> {
    let min_chars = min_chars.max(1);
    let chars = password.chars().count();
    if chars < min_chars {
        return Err(Error::new(
            ErrorCode::PasswordTooShort,
            format!(
                "the password must have at least {min_chars} characters; {RECOMMENDED_PASSWORD_CHARS} or more is recommended"
            ),
        )
        .with_hint("a passphrase of several words is long and easy to remember; spaces and any characters are allowed"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::new(
            ErrorCode::PasswordTooLong,
            format!("the password must have at most {MAX_PASSWORD_BYTES} bytes"),
        )
        .with_hint("use a shorter passphrase (64 characters of any script always fit)"));
    }
    let user = username.trim().to_lowercase();
    if user.chars().count() >= MIN_USERNAME_CHARS_CHECKED && password.to_lowercase().contains(&user)
    {
        return Err(Error::new(
            ErrorCode::PasswordContainsUsername,
            "the password must not contain the username",
        )
        .with_hint("choose a password that has nothing to do with the account name"));
    }
    if is_common(password) {
        return Err(Error::new(
            ErrorCode::PasswordTooCommon,
            "this password is among the 20,000 most common ones, which attackers try first",
        )
        .with_hint(
            "choose a password of your own; a passphrase of several unrelated words works well",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), Error>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn bundled_list_decodes_and_holds_the_usual_suspects() {
        assert!(
            common_password_count() > 19_000,
            "{}",
            common_password_count()
        );
        for p in [
            "123456",
            "password",
            "qwerty",
            "iloveyou",
            "PassWord",
            " letmein ",
        ] {
            assert!(is_common(p), "{p}");
        }
        assert!(!is_common("correct horse battery"));
    }

    #[test]
    fn every_listed_entry_is_found_and_neighbours_are_not() {
        let list = &*COMMON;
        for i in 0..list.len() {
            let e = list.entry(i);
            assert!(list.contains(e), "{e}");
            if i > 0 {
                assert!(list.entry(i - 1) < e, "sorted and unique at {i}");
            }
            let longer = format!("{e}\u{7f}");
            assert!(!list.contains(&longer), "{longer}");
        }
        assert!(!list.contains(""));
        let empty = CommonList::decode(b"not gzip");
        assert_eq!(empty.len(), 0);
        assert!(!empty.contains("password"));
    }

    #[test]
    fn each_refusal_has_its_own_code() {
        assert_eq!(
            code(check(8, "alice", "short")),
            Some(ErrorCode::PasswordTooShort)
        );
        assert_eq!(
            code(check(8, "alice", &"é".repeat(MAX_PASSWORD_BYTES / 2 + 1))),
            Some(ErrorCode::PasswordTooLong)
        );
        assert_eq!(
            code(check(8, "alice", "password1")),
            Some(ErrorCode::PasswordTooCommon)
        );
        assert_eq!(
            code(check(8, "Alice", "my ALICE secret")),
            Some(ErrorCode::PasswordContainsUsername)
        );
    }

    #[test]
    fn unicode_spaces_and_long_passphrases_are_fine_without_composition_rules() {
        // No upper case, digit or symbol needed; any script; 64 characters and more.
        assert_eq!(code(check(8, "alice", "ünïcødé pass")), None);
        assert_eq!(code(check(8, "alice", "パスワードは長い文章")), None);
        assert_eq!(code(check(8, "alice", &"long words ".repeat(10))), None);
        assert_eq!(code(check(8, "alice", &"ж".repeat(64))), None);
        // Length counts characters, not bytes: eight CJK characters are enough.
        assert_eq!(code(check(8, "bob", "長い秘密の合言葉")), None);
    }

    #[test]
    fn short_usernames_are_not_searched_for() {
        assert_eq!(code(check(8, "al", "almost all alpine")), None);
        assert_eq!(
            code(check(8, "ali", "quality alibis")),
            Some(ErrorCode::PasswordContainsUsername)
        );
    }

    #[test]
    fn the_refusal_recommends_fifteen_characters() {
        let e = check(8, "alice", "short").expect_err("short");
        assert!(e.to_string().contains("15"), "{e}");
    }
}
