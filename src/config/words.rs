//! The job file's one-word settings (`srcType`, `jobType`, `auditMode`, `getObjectMetaMode`):
//! each written, shown and serialized as the original's lowercase word, read case-insensitively.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares an enum whose variants are spelt as words in the conf file; `WORDS` is what the
/// key table accepts, so the list of allowed words exists once.
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant,)+
        }

        impl $name {
            /// Every word this setting accepts, as the original spells it.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word as written in the conf file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                let s = s.trim();
                $(if s.eq_ignore_ascii_case($word) {
                    return Ok($name::$variant);
                })+
                Err(format!("`{s}` is not one of {}", Self::WORDS.join(", ")))
            }
        }
    };
}

word_enum! {
    /// Where the files come from (`srcType`).
    SrcType {
        #[default]
        Local = "local",
        Oss = "oss",
        Qiniu = "qiniu",
        Bos = "bos",
        Ks3 = "ks3",
        S3 = "s3",
        Youpai = "youpai",
        Http = "http",
        Cos = "cos",
        Azure = "azure",
    }
}

word_enum! {
    /// `import` copies (then audits if `isAuditAfterImport`); `audit` only compares.
    JobType {
        #[default]
        Import = "import",
        Audit = "audit",
    }
}

word_enum! {
    /// How a copied file is checked: `simple` size; `general` size, last-modified and
    /// headers; `detailed` content checksum.
    AuditMode {
        Simple = "simple",
        #[default]
        General = "general",
        Detailed = "detailed",
    }
}

word_enum! {
    /// qiniu only: how object metadata is fetched.
    ObjectMetaMode {
        Head = "head",
        #[default]
        Stat = "stat",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_case_insensitively() {
        for word in SrcType::WORDS {
            let parsed: SrcType = word.to_uppercase().parse().unwrap();
            assert_eq!(parsed.to_string(), *word);
        }
        assert_eq!("Azure".parse::<SrcType>(), Ok(SrcType::Azure));
        assert_eq!(" AUDIT ".parse::<JobType>(), Ok(JobType::Audit));
        assert_eq!("Detailed".parse::<AuditMode>(), Ok(AuditMode::Detailed));
        assert_eq!("HEAD".parse::<ObjectMetaMode>(), Ok(ObjectMetaMode::Head));
        let err = "ftp".parse::<SrcType>().unwrap_err();
        assert!(err.contains("local, oss, qiniu"), "{err}");
    }

    #[test]
    fn defaults_are_the_originals() {
        assert_eq!(SrcType::default(), SrcType::Local);
        assert_eq!(JobType::default(), JobType::Import);
        assert_eq!(AuditMode::default(), AuditMode::General);
        assert_eq!(ObjectMetaMode::default(), ObjectMetaMode::Stat);
    }

    #[test]
    fn serde_uses_the_words() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Probe {
            src: SrcType,
            mode: AuditMode,
        }
        let probe = Probe {
            src: SrcType::Ks3,
            mode: AuditMode::Simple,
        };
        let text = toml::to_string(&probe).unwrap();
        assert_eq!(text, "src = \"ks3\"\nmode = \"simple\"\n");
        assert_eq!(toml::from_str::<Probe>(&text).unwrap(), probe);
    }
}
