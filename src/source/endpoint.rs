//! Where an S3-compatible source (oss, s3, cos, bos, ks3) lives: `srcDomain`, `srcBucket` and
//! `appId` turned into an endpoint URL, a SigV4 region, an addressing style and a bucket name.
//!
//! Decisions where the original leaves room:
//! - A `srcDomain` without a scheme gets `http://`: the original's templates and SDKs use
//!   http, so a job file that worked there means the same here; write `https://` to get TLS.
//! - cos builds `https://cos.<region>.myqcloud.com` itself (every COS region serves https);
//!   a full `http(s)://` srcDomain is taken as given instead.
//! - When a host name does not tell the region, the region is `us-east-1`, which servers
//!   that do not check regions (MinIO, Ceph, test servers) accept.
//! - ks3's region is `<r>` of `ks3-<r>[-internal].ksyun[cs].com`; this follows KS3's endpoint
//!   names and is not verified against a real KS3.
//! - An IP or localhost host means path style (no DNS for `bucket.127.0.0.1`); any other host
//!   means virtual-hosted, so a private store on a host name needs DNS for `bucket.host`.

use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Vendor {
    Oss,
    S3,
    Cos,
    Bos,
    Ks3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Endpoint {
    /// scheme://host[:port], no trailing slash, no bucket
    pub url: String,
    /// the SigV4 signing region
    pub region: String,
    /// true: path style (http://host/bucket/key); false: virtual-hosted (http://bucket.host/key)
    pub path_style: bool,
    /// the bucket name to send
    pub bucket: String,
}

const DEFAULT_REGION: &str = "us-east-1";

/// The original's cos v4 short codes and the region ids COS uses for them today.
const COS_SHORT: &str = "sh=ap-shanghai gz=ap-guangzhou tj=ap-beijing-1 bj=ap-beijing cd=ap-chengdu \
                         sgp=ap-singapore hk=ap-hongkong ca=na-toronto ger=eu-frankfurt cq=ap-chongqing";

/// A source endpoint that cannot be used: one sentence for the user naming srcDomain /
/// srcBucket and what to write instead, and the key it is about, so that a config error
/// points at that key's line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EndpointError {
    pub key: &'static str,
    pub message: String,
}

impl EndpointError {
    fn new(key: &'static str, message: String) -> EndpointError {
        EndpointError { key, message }
    }
}

/// # Errors
/// When srcDomain or srcBucket (with appId for COS) name no endpoint of `vendor`.
pub fn s3_endpoint(
    vendor: S3Vendor,
    src_domain: &str,
    src_bucket: &str,
    app_id: u64,
) -> Result<S3Endpoint, EndpointError> {
    let example = match vendor {
        S3Vendor::Oss => "http://oss-cn-hangzhou-internal.aliyuncs.com",
        S3Vendor::S3 => "http://s3.us-east-1.amazonaws.com",
        S3Vendor::Cos => "ap-guangzhou",
        S3Vendor::Bos => "http://bj.bcebos.com",
        S3Vendor::Ks3 => "http://ks3-cn-beijing.ksyun.com",
    };
    let shown = &hide_userinfo(src_domain.trim());
    let domain = shown.trim_end_matches('/');
    if domain.is_empty() {
        return Err(EndpointError::new(
            "srcDomain",
            format!("srcDomain is blank; write the endpoint, such as srcDomain={example}"),
        ));
    }
    // The template comment says "no /", but a stray one around the name is harmless.
    let bucket = src_bucket.trim().trim_matches('/');
    if bucket.is_empty() || bucket.contains('/') {
        return Err(EndpointError::new(
            "srcBucket",
            format!(
                "srcBucket `{bucket}` is not a bucket name; write the bucket alone, such as \
                 srcBucket=mybucket, and any folder in srcPrefix"
            ),
        ));
    }
    let bucket = match vendor {
        S3Vendor::Cos => {
            cos_bucket(bucket, app_id).map_err(|m| EndpointError::new("srcBucket", m))?
        }
        _ => bucket.to_string(),
    };
    let (url, region, path_style) = if vendor == S3Vendor::Cos && !domain.contains("://") {
        let region = cos_region(domain).ok_or_else(|| {
            EndpointError::new(
                "srcDomain",
                format!(
                    "srcDomain `{shown}` is not a COS region; write a region id such as \
                     srcDomain=ap-guangzhou or a short code (sh gz tj bj cd sgp hk ca ger cq)"
                ),
            )
        })?;
        let url = format!("https://cos.{region}.myqcloud.com");
        (url, Some(region), false)
    } else {
        located(vendor, domain, &bucket).map_err(|why| {
            EndpointError::new(
                "srcDomain",
                format!(
                    "srcDomain `{shown}` {why}; write scheme://host[:port], such as \
                     srcDomain={example}"
                ),
            )
        })?
    };
    let region = region.unwrap_or_else(|| DEFAULT_REGION.to_string());
    Ok(S3Endpoint {
        url,
        region,
        path_style,
        bucket,
    })
}

/// (url, region when the host tells it, path style) of an explicit `[scheme://]host[:port]`.
fn located(
    vendor: S3Vendor,
    domain: &str,
    bucket: &str,
) -> Result<(String, Option<String>, bool), &'static str> {
    // DNS names and schemes are case-blind; one spelling keeps comparisons simple downstream.
    let url = match domain.contains("://") {
        true => domain.to_ascii_lowercase(),
        false => format!("http://{domain}").to_ascii_lowercase(),
    };
    let (scheme, authority) = url.split_once("://").unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err("is not an http:// or https:// address");
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err("has more than a host (a path, query or user name)");
    }
    let (host, tail) = split_host_port(authority);
    let port_ok = match tail.strip_prefix(':') {
        Some(p) => p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0),
        None => tail.is_empty(),
    };
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if host.is_empty() || !port_ok || !(name_ok || is_ip_or_localhost(host)) {
        return Err("has no valid host[:port]");
    }
    if is_ip_or_localhost(host) {
        // No DNS for bucket.127.0.0.1: local and private stores get the bucket in the path.
        return Ok((url, None, true));
    }
    if host.starts_with(&format!("{}.", bucket.to_ascii_lowercase())) {
        return Err("starts with the bucket, which belongs in srcBucket only");
    }
    let host = host.to_string();
    let region = match vendor {
        S3Vendor::Oss => oss_region(&host),
        S3Vendor::S3 => s3_region(&host),
        S3Vendor::Ks3 => vendor_label(&host, &[".ksyun.com", ".ksyuncs.com"], "ks3-"),
        S3Vendor::Cos => cos_region(&host).filter(|_| host.starts_with("cos.")),
        // bj.bcebos.com is BOS's own API; its S3 API is s3.bj.bcebos.com, signed as `bj`.
        S3Vendor::Bos => match host.strip_suffix(".bcebos.com") {
            Some(label) if !label.contains('.') => {
                let url = url.replacen("://", "://s3.", 1);
                return Ok((url, Some(label.to_string()), false));
            }
            Some(label) => label.strip_prefix("s3.").map(str::to_string),
            None => None,
        },
    };
    Ok((url, region, false))
}

/// srcPrefix as a key prefix: a leading `/` (as in the cos template) is dropped; "" means the whole bucket.
pub fn key_prefix(src_prefix: &str) -> String {
    src_prefix.trim_start_matches('/').to_string()
}

/// The key of `rel` under the key prefix `prefix`.
pub fn prefixed_key(prefix: &str, rel: &crate::relpath::RelPath) -> String {
    format!("{prefix}{}", String::from_utf8_lossy(rel.as_bytes()))
}

/// The relative path of `key` under the key prefix `prefix`: what follows it (empty when the
/// key is not longer).
pub fn unprefixed(prefix: &str, key: &str) -> crate::relpath::RelPath {
    crate::relpath::RelPath(
        key.get(prefix.len()..)
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
    )
}

/// The host of `scheme://[user@]host[:port]/path`, without brackets around an IPv6 address.
pub fn host_of(endpoint: &str) -> &str {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    split_host_port(authority).0
}

pub fn is_ip_or_localhost(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok()
}

/// The region of an OSS host, `oss-<region>[-internal].aliyuncs.com`, with or without a bucket
/// label in front; `None` for other hosts and for the region-less acceleration endpoints.
pub fn oss_region(host: &str) -> Option<String> {
    let region = vendor_label(host, &[".aliyuncs.com"], "oss-")?;
    (region.contains('-') && !region.starts_with("accelerate")).then_some(region)
}

/// (host, rest after the host); a bare IPv6 address has no port, so its colons stay in the host.
fn split_host_port(authority: &str) -> (&str, &str) {
    if let Some(v6) = authority.strip_prefix('[') {
        // An unclosed bracket is no host at all, so callers reject it.
        return v6.split_once(']').unwrap_or(("", authority));
    }
    if authority.matches(':').count() > 1 {
        return (authority, "");
    }
    authority
        .find(':')
        .map_or((authority, ""), |i| authority.split_at(i))
}

/// `<r>` from the last label before one of `suffixes`, shaped `<prefix><r>[-internal]`.
fn vendor_label(host: &str, suffixes: &[&str], prefix: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels = suffixes.iter().find_map(|s| host.strip_suffix(s))?;
    let last = labels.rsplit('.').next()?.strip_prefix(prefix)?;
    let region = last.strip_suffix("-internal").unwrap_or(last);
    (!region.is_empty()).then(|| region.to_string())
}

/// s3.<r>, s3-<r>, s3.dualstack.<r>, s3-fips.<r> under amazonaws.com[.cn]; s3 alone is us-east-1.
fn s3_region(host: &str) -> Option<String> {
    let labels = host
        .strip_suffix(".amazonaws.com.cn")
        .or_else(|| host.strip_suffix(".amazonaws.com"))?;
    let last = labels.rsplit('.').next()?;
    let region = last.strip_prefix("s3-").unwrap_or(last);
    // s3-external-1 is a historical alias of us-east-1 that merely looks like a region.
    (region != "external-1"
        && is_region_id(region)
        && region.ends_with(|c: char| c.is_ascii_digit()))
    .then(|| region.to_string())
}

fn cos_region(code: &str) -> Option<String> {
    let code = code.to_ascii_lowercase();
    let mut short = COS_SHORT
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='));
    if let Some((_, region)) = short.find(|(short, _)| *short == code) {
        return Some(region.to_string());
    }
    let region = code
        .strip_prefix("cos.")
        .and_then(|h| h.strip_suffix(".myqcloud.com"));
    let region = region.unwrap_or(&code);
    is_region_id(region).then(|| region.to_string())
}

/// `xx-yyyy[-n…]`: lower-case letters first, then hyphen-joined letters/digits.
fn is_region_id(r: &str) -> bool {
    let word = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    r.split_once('-').is_some_and(|(area, rest)| {
        area.len() >= 2 && area.bytes().all(|b| b.is_ascii_lowercase()) && rest.split('-').all(word)
    })
}

/// COS names buckets `<name>-<APPID>`. With appId=0 a bucket already ending in 7+ digits is
/// taken as carrying its APPID (fewer digits are too likely a year or a counter).
fn cos_bucket(bucket: &str, app_id: u64) -> Result<String, String> {
    let suffix = bucket
        .rsplit_once('-')
        .filter(|(name, _)| !name.is_empty())
        .map(|(_, id)| id);
    match suffix {
        _ if app_id != 0 && suffix == Some(app_id.to_string().as_str()) => Ok(bucket.to_string()),
        _ if app_id != 0 => Ok(format!("{bucket}-{app_id}")),
        Some(id) if id.len() >= 7 && id.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(bucket.to_string())
        }
        _ => Err(format!(
            "srcBucket `{bucket}` has no APPID suffix and appId=0; set appId to your Tencent Cloud \
             APPID (such as appId=1250000000) or write srcBucket={bucket}-<APPID>"
        )),
    }
}

/// `scheme://user:password@host...` with the user and password replaced by `***`: a URL
/// echoed in a message must not carry them into logs or error.list.
pub fn hide_userinfo(url: &str) -> String {
    // The last `@` anywhere: a password may hold `/`, `?` or `#`, and hiding a little of a
    // path that holds `@` is the safe side.
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rfind('@') {
        Some(at) => format!("{head}***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::hide_userinfo;

    #[test]
    fn user_and_password_are_hidden_wherever_they_stand() {
        assert_eq!(hide_userinfo("http://u:p@h/a"), "http://***@h/a");
        assert_eq!(hide_userinfo("ak:sk@host"), "***@host");
        assert_eq!(hide_userinfo("http://u:p/q?#x@h/"), "http://***@h/");
        assert_eq!(hide_userinfo("http://h/a"), "http://h/a");
    }

    use super::*;

    /// `vendor srcDomain srcBucket appId => url region style bucket`, or `=> ERR <start of it>`.
    const CASES: &[&str] = &[
        // srcDomain/srcBucket/appId of tests/fixtures/conf/templates/{oss,s3,cos,bos}.job.cfg
        "oss http://oss-cn-hangzhou-internal.aliyuncs.com mybucket 0 => http://oss-cn-hangzhou-internal.aliyuncs.com cn-hangzhou vhost mybucket",
        "s3 http://s3.us-east-1.amazonaws.com mybucket 0 => http://s3.us-east-1.amazonaws.com us-east-1 vhost mybucket",
        "cos sh mybucket 1252883280 => https://cos.ap-shanghai.myqcloud.com ap-shanghai vhost mybucket-1252883280",
        "bos http://bj.bcebos.com mybucket 0 => http://s3.bj.bcebos.com bj vhost mybucket",
        // ks3 has no template: the examples of the templates' srcDomain comment
        "ks3 http://ks3-cn-beijing.ksyun.com b1 0 => http://ks3-cn-beijing.ksyun.com cn-beijing vhost b1",
        "ks3 http://ks3-us-west-1.ksyun.com b1 0 => http://ks3-us-west-1.ksyun.com us-west-1 vhost b1",
        "ks3 http://kss.ksyun.com b1 0 => http://kss.ksyun.com us-east-1 vhost b1",
        "ks3 https://ks3-cn-beijing-internal.ksyuncs.com b1 0 => https://ks3-cn-beijing-internal.ksyuncs.com cn-beijing vhost b1",
        // scheme, case, trailing slash, hosts that do not tell the region
        "oss oss-cn-hangzhou.aliyuncs.com/ b1 0 => http://oss-cn-hangzhou.aliyuncs.com cn-hangzhou vhost b1",
        "oss HTTPS://OSS-us-west-1.aliyuncs.com b1 0 => https://oss-us-west-1.aliyuncs.com us-west-1 vhost b1",
        "oss https://oss-accelerate.aliyuncs.com b1 0 => https://oss-accelerate.aliyuncs.com us-east-1 vhost b1",
        "oss http://oss.example.com:8080 b1 0 => http://oss.example.com:8080 us-east-1 vhost b1",
        "s3 https://s3.amazonaws.com b1 0 => https://s3.amazonaws.com us-east-1 vhost b1",
        "s3 http://s3-us-west-2.amazonaws.com b1 0 => http://s3-us-west-2.amazonaws.com us-west-2 vhost b1",
        "s3 http://s3.dualstack.eu-west-1.amazonaws.com b1 0 => http://s3.dualstack.eu-west-1.amazonaws.com eu-west-1 vhost b1",
        "s3 http://s3.cn-north-1.amazonaws.com.cn b1 0 => http://s3.cn-north-1.amazonaws.com.cn cn-north-1 vhost b1",
        "s3 http://s3-external-1.amazonaws.com b1 0 => http://s3-external-1.amazonaws.com us-east-1 vhost b1",
        "bos https://s3.gz.bcebos.com b1 0 => https://s3.gz.bcebos.com gz vhost b1",
        "bos http://bos.example.com b1 0 => http://bos.example.com us-east-1 vhost b1",
        // cos: region ids pass through; appId suffix
        "cos GZ b 1 => https://cos.ap-guangzhou.myqcloud.com ap-guangzhou vhost b-1",
        "cos ap-beijing-1 b 1 => https://cos.ap-beijing-1.myqcloud.com ap-beijing-1 vhost b-1",
        "cos na-siliconvalley b 1 => https://cos.na-siliconvalley.myqcloud.com na-siliconvalley vhost b-1",
        "cos ap-shanghai-fsi b 1 => https://cos.ap-shanghai-fsi.myqcloud.com ap-shanghai-fsi vhost b-1",
        "cos cos.ap-chengdu.myqcloud.com b 1 => https://cos.ap-chengdu.myqcloud.com ap-chengdu vhost b-1",
        "cos http://cos.ap-nanjing.myqcloud.com b 1 => http://cos.ap-nanjing.myqcloud.com ap-nanjing vhost b-1",
        "cos gz mybucket-1252883280 1252883280 => https://cos.ap-guangzhou.myqcloud.com ap-guangzhou vhost mybucket-1252883280",
        "cos gz mybucket-1252883280 0 => https://cos.ap-guangzhou.myqcloud.com ap-guangzhou vhost mybucket-1252883280",
        "cos gz data-1250000000 1252883280 => https://cos.ap-guangzhou.myqcloud.com ap-guangzhou vhost data-1250000000-1252883280",
        "cos gz mybucket 0 => ERR srcBucket `mybucket` has no APPID suffix and appId=0",
        "cos gz logs-2024 0 => ERR srcBucket `logs-2024` has no APPID suffix",
        "cos shanghai b 1 => ERR srcDomain `shanghai` is not a COS region",
        "cos ap_guangzhou b 1 => ERR srcDomain",
        "cos 1a-b b 1 => ERR srcDomain",
        // IP addresses and localhost: path style, us-east-1, url as given
        "oss 127.0.0.1:9000 b1 0 => http://127.0.0.1:9000 us-east-1 path b1",
        "s3 https://10.0.0.5 b1 0 => https://10.0.0.5 us-east-1 path b1",
        "bos http://localhost:8080/ b1 0 => http://localhost:8080 us-east-1 path b1",
        "ks3 http://[::1]:9000 b1 0 => http://[::1]:9000 us-east-1 path b1",
        "cos http://[::1] b-1 1 => http://[::1] us-east-1 path b-1",
        "cos http://127.0.0.1:9000 b 7 => http://127.0.0.1:9000 us-east-1 path b-7",
        // errors
        "s3 http://s3.amazonaws.com a/b 0 => ERR srcBucket `a/b` is not a bucket name",
        "s3 http://s3.amazonaws.com /b/ 0 => http://s3.amazonaws.com us-east-1 vhost b",
        "oss ftp://h b1 0 => ERR srcDomain `ftp://h` is not an http:// or https:// address",
        "oss http://h/path b1 0 => ERR srcDomain `http://h/path` has more than a host",
        "oss http://u:p@h b1 0 => ERR srcDomain `http://***@h` has more than a host",
        "oss http://h?x b1 0 => ERR srcDomain `http://h?x` has more than a host",
        "oss http:// b1 0 => ERR srcDomain `http://` has no valid host[:port]",
        "oss http://h:0 b1 0 => ERR srcDomain `http://h:0` has no valid host[:port]",
        "oss http://h:99999 b1 0 => ERR srcDomain",
        "oss http://[::1 b1 0 => ERR srcDomain",
        "oss http://中文.com b1 0 => ERR srcDomain",
        "oss http://mybucket.oss-cn-hangzhou.aliyuncs.com mybucket 0 => ERR srcDomain `http://mybucket.oss-cn-hangzhou.aliyuncs.com` starts with the bucket",
    ];

    fn run(case: &str) -> String {
        let w: Vec<&str> = case.split(' ').collect();
        let vendors = [
            S3Vendor::Oss,
            S3Vendor::S3,
            S3Vendor::Cos,
            S3Vendor::Bos,
            S3Vendor::Ks3,
        ];
        let vendor = vendors[["oss", "s3", "cos", "bos", "ks3"]
            .iter()
            .position(|v| *v == w[0])
            .unwrap()];
        match s3_endpoint(vendor, w[1], w[2], w[3].parse().unwrap()) {
            Ok(e) => {
                let style = if e.path_style { "path" } else { "vhost" };
                format!("{} {} {style} {}", e.url, e.region, e.bucket)
            }
            Err(e) => format!("ERR {e}"),
        }
    }

    #[test]
    fn cases() {
        for case in CASES {
            let (input, want) = case.split_once(" => ").unwrap();
            let got = run(input);
            let ok = got.starts_with(want) && (want.starts_with("ERR") || got == want);
            assert!(ok, "{input}\n got {got}\nwant {want}");
        }
        for (short, region) in COS_SHORT
            .split_whitespace()
            .filter_map(|p| p.split_once('='))
        {
            let want = format!("https://cos.{region}.myqcloud.com {region} vhost b-1250000000");
            assert_eq!(run(&format!("cos {short} b-1250000000 0")), want);
        }
        let blank = |d, b| s3_endpoint(S3Vendor::Oss, d, b, 0).unwrap_err();
        let domain = blank(" ", "b");
        assert_eq!(domain.key, "srcDomain");
        assert!(
            domain
                .message
                .starts_with("srcDomain is blank; write the endpoint, such as")
        );
        let bucket = blank("http://h", " / ");
        assert_eq!(bucket.key, "srcBucket");
        assert!(
            bucket
                .message
                .starts_with("srcBucket `` is not a bucket name")
        );
        // About srcDomain, though it names srcBucket.
        let named = blank("http://b.oss-cn-hangzhou.aliyuncs.com", "b");
        assert_eq!(named.key, "srcDomain", "{named}");
    }

    #[test]
    fn helpers() {
        for (prefix, want) in [("/docs/", "docs/"), ("docs/", "docs/"), ("", ""), ("/", "")] {
            assert_eq!(key_prefix(prefix), want);
        }
        for (url, host) in [
            ("http://127.0.0.1:9800", "127.0.0.1"),
            (
                "https://oss-cn-hangzhou.aliyuncs.com/",
                "oss-cn-hangzhou.aliyuncs.com",
            ),
            ("http://[::1]:80", "::1"),
            ("::1", "::1"),
            ("u@h:1/x?y", "h"),
            ("", ""),
        ] {
            assert_eq!(host_of(url), host, "{url}");
        }
        for (host, ip) in [
            ("127.0.0.1", true),
            ("LOCALHOST", true),
            ("[::1]", true),
            ("h.com", false),
            ("", false),
        ] {
            assert_eq!(is_ip_or_localhost(host), ip, "{host}");
        }
        for (host, region) in [
            ("oss-cn-hangzhou-internal.aliyuncs.com", Some("cn-hangzhou")),
            (
                "b.oss-cn-shanghai-finance-1.aliyuncs.com",
                Some("cn-shanghai-finance-1"),
            ),
            ("oss-accelerate.aliyuncs.com", None),
            ("oss-.aliyuncs.com", None),
            ("127.0.0.1", None),
        ] {
            assert_eq!(oss_region(host).as_deref(), region, "{host}");
        }
    }
}
