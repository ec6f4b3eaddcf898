//! What every S3 conversation of this tool shares, source or destination: the client with the
//! settings S3-compatible stores need, how a failure is classified and worded (without
//! secrets), and the capture of headers the SDK does not model.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, RuntimeComponents, retry::RetryConfig, timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::outage::NoAnswer;
use crate::words::{no_answer, refusal};

/// Where and as whom to connect; secrets stay inside the client.
pub struct ClientSettings<'a> {
    /// `scheme://host[:port]`, without the bucket.
    pub endpoint: &'a str,
    pub region: &'a str,
    /// Bucket in the path (IP and localhost endpoints), else in the host name.
    pub path_style: bool,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

pub fn build_client(s: &ClientSettings<'_>) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(s.endpoint.trim_end_matches('/'))
        .region(Region::new(s.region.to_string()))
        .credentials_provider(Credentials::new(
            s.access_key,
            s.secret_key,
            None,
            None,
            "ossimport-conf",
        ))
        .force_path_style(s.path_style)
        // OSS and most S3-compatible stores reject the aws-chunked CRC trailers the SDK
        // sends by default (reference §9).
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        // Retries live in one place per side (backon policies), for every backend; the SDK's
        // own would multiply with them (and its retry quota gives up under load).
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                // A stalled connection becomes a retried error instead of a hang.
                .read_timeout(Duration::from_secs(120))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

/// A request failure in words, and whether it is worth another try.
pub struct Failure {
    pub message: String,
    pub transient: bool,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    pub code: Option<String>,
    /// Set when there was no answer worth keeping (none at all, or a 5xx): how, and why in
    /// a few words, for riding out an outage.
    pub no_answer: Option<(NoAnswer, String)>,
}

/// Where a request went and as whom, for wording its failures: `host:port`, the settings
/// that hold the keys (`destAccessKey/destSecretKey`), and the secrets to scrub (a server
/// may echo the key id back).
pub struct Wording<'a> {
    pub authority: &'a str,
    pub keys: &'a str,
    pub secrets: &'a [String],
}

/// Words a request failure in one sentence, `{what} {key}: {cause}`; the SDK's whole error
/// chain goes to the log at DEBUG only.
pub fn describe<E>(what: &str, key: &str, e: &SdkError<E, HttpResponse>, w: &Wording<'_>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = is_transient(e);
    let (phrase, status, code, no_answer) = match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().map(str::to_string);
            let phrase = refusal(status, code.as_deref(), se.err().message(), w.keys);
            let no_answer = transient.then(|| (NoAnswer::Failing, phrase.clone()));
            (phrase, Some(status), code, no_answer)
        }
        SdkError::TimeoutError(_) => {
            let phrase = format!("no answer from {} in time (timed out)", w.authority);
            (
                phrase.clone(),
                None,
                None,
                Some((NoAnswer::Failing, phrase)),
            )
        }
        _ => {
            let (how, phrase) = no_answer(e, w.authority);
            (phrase.clone(), None, None, Some((how, phrase)))
        }
    };
    let scrub = |text: String| scrub(text, w.secrets.iter().map(String::as_str));
    tracing::debug!(
        "{}",
        scrub(format!("{what} {key}: {}", DisplayErrorContext(e)))
    );
    Failure {
        message: scrub(format!("{what} {key}: {phrase}")),
        transient,
        status,
        code,
        no_answer: no_answer.map(|(how, why)| (how, scrub(why))),
    }
}

/// `text` with every non-empty secret replaced by `***`: a server may echo the key id back.
pub fn scrub<'a>(mut text: String, secrets: impl IntoIterator<Item = &'a str>) -> String {
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    text
}

/// Timeouts, connection faults, 5xx and throttling are worth another try; the rest is final.
pub fn is_transient<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => transient_code(
            se.raw().status().as_u16(),
            se.err().code().unwrap_or_default(),
        ),
        _ => false,
    }
}

/// Whether a server's refusal (HTTP status, S3 error code) is worth another try.
pub fn transient_code(status: u16, code: &str) -> bool {
    status >= 500
        || status == 429
        || matches!(
            code,
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                // A copy or complete answered 200 with an error body: retry, says AWS.
                | "InternalError"
                | "ServiceUnavailable"
        )
}

/// The response header OSS gives the CRC-64 of an object in.
pub const OSS_CRC64_HEADER: &str = "x-oss-hash-crc64ecma";

/// Captures one response header the SDK does not model (`x-oss-hash-crc64ecma`).
#[derive(Debug, Clone, Default)]
pub struct CaptureHeader(Arc<Mutex<Option<String>>>);

impl CaptureHeader {
    /// The captured value as a CRC-64, when the server sent one.
    pub fn crc64(&self) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            .and_then(|v| v.parse().ok())
    }
}

impl Intercept for CaptureHeader {
    fn name(&self) -> &'static str {
        "CaptureHeader"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let value = context
            .response()
            .headers()
            .get(OSS_CRC64_HEADER)
            .map(str::to_string);
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = value;
        Ok(())
    }
}
