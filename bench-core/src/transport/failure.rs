//! Why a connection failed, in words a user can act on: the likely cause of a TLS error
//! (a plain port, a certificate of another CA, a refused client certificate), from
//! rustls's error itself or, where the `redis` crate keeps that to itself, its message.

use std::io;

/// The likely causes of a TLS failure, as its error's message ends.
const NOT_TLS: &str = " (the server did not answer in TLS: is this a plain-TCP port?)";
const NOT_CHAINED: &str =
    " (the server's certificate does not chain to the CA given, or names another host)";
const CERTIFICATE_REFUSED: &str = " (the server refused our client certificate, or wanted one: \
     with tls-auth-clients it needs one signed by its CA)";

/// The alerts a server sends when it refuses our certificate or wanted one.
const REFUSING_ALERTS: [rustls::AlertDescription; 5] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::HandshakeFailure,
];

/// What most likely caused a TLS error rustls reports (in an `io::Error`), if it is one.
pub(super) fn tls_hint(e: &io::Error) -> Option<&'static str> {
    use rustls::Error as E;
    let inner = e.get_ref()?.downcast_ref::<E>()?;
    Some(match inner {
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => NOT_TLS,
        E::InvalidCertificate(_) => NOT_CHAINED,
        E::AlertReceived(alert) if REFUSING_ALERTS.contains(alert) => CERTIFICATE_REFUSED,
        _ => return None,
    })
}

/// The same hint for a rustls error known only by its message: the `redis` crate keeps
/// the error itself. What is looked for is rustls's own Display of each kind, so the
/// words cannot drift from rustls's.
pub(crate) fn tls_hint_in_text(text: &str) -> Option<&'static str> {
    use rustls::Error as E;
    // The words of a kind: what two errors of it with different details share.
    let kind = |a: E, b: E| {
        let (a, b) = (a.to_string(), b.to_string());
        let shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        String::from_utf8_lossy(&a.as_bytes()[..shared]).into_owned()
    };
    let unexpected = |got_type| E::InappropriateMessage {
        expect_types: Vec::new(),
        got_type,
    };
    let not_tls = [
        kind(
            E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            E::InvalidMessage(rustls::InvalidMessage::MissingData("")),
        ),
        kind(
            unexpected(rustls::ContentType::Alert),
            unexpected(rustls::ContentType::Handshake),
        ),
    ];
    let not_chained = kind(
        E::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        E::InvalidCertificate(rustls::CertificateError::BadSignature),
    );
    if not_tls.iter().any(|words| text.contains(words.as_str())) {
        Some(NOT_TLS)
    } else if text.contains(&not_chained) {
        Some(NOT_CHAINED)
    } else if REFUSING_ALERTS
        .iter()
        .any(|alert| text.contains(&E::AlertReceived(*alert).to_string()))
    {
        Some(CERTIFICATE_REFUSED)
    } else {
        None
    }
}

/// A TLS error after the handshake, with its likely cause (a TLS 1.3 server checks a
/// client certificate after the client's side of the handshake is done, so a refused one
/// shows at the first read); other errors as they are.
pub fn explain(e: io::Error) -> io::Error {
    match tls_hint(&e) {
        Some(hint) => io::Error::new(e.kind(), format!("TLS: {e}{hint}")),
        None => e,
    }
}

/// A handshake's failure, with what most likely caused it.
pub(crate) fn handshake_error(e: io::Error) -> io::Error {
    let hint = if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        " (no TLS answer within the deadline: is this a plain-TCP port, or the server stalled?)"
    } else if let Some(hint) = tls_hint(&e) {
        hint
    } else if e.kind() == io::ErrorKind::UnexpectedEof {
        " (the server closed the connection during the handshake)"
    } else {
        ""
    };
    let kind = match e.kind() {
        io::ErrorKind::WouldBlock => io::ErrorKind::TimedOut,
        kind => kind,
    };
    io::Error::new(kind, format!("TLS handshake failed: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_name_the_likely_cause() {
        let timeout = handshake_error(io::ErrorKind::WouldBlock.into());
        assert_eq!(timeout.kind(), io::ErrorKind::TimedOut);
        assert!(timeout.to_string().contains("plain-TCP port"), "{timeout}");
        let issuer = handshake_error(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        assert!(
            issuer.to_string().contains("does not chain to the CA"),
            "{issuer}"
        );
        // The same text from elsewhere is no rustls error: no hint.
        let text = handshake_error(io::Error::other("invalid peer certificate"));
        assert!(!text.to_string().contains("chain"), "{text}");
        let refused = explain(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        ));
        assert!(
            refused.to_string().contains("client certificate"),
            "{refused}"
        );
        let plain = explain(io::ErrorKind::ConnectionReset.into());
        assert_eq!(plain.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn a_tls_error_known_only_by_its_message_gets_the_same_hint() {
        let errors = [
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature),
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::MissingData("x")),
            rustls::Error::AlertReceived(rustls::AlertDescription::CloseNotify),
        ];
        for e in errors {
            let text = format!("127.0.0.1:6379: {e}");
            let io = io::Error::new(io::ErrorKind::InvalidData, e);
            assert_eq!(tls_hint_in_text(&text), tls_hint(&io), "{text}");
        }
        assert_eq!(tls_hint_in_text("connection refused"), None);
    }
}
