//! The subject of a certificate (already verified by rustls), read with a
//! minimal DER walk: its common name, or the whole subject as
//! `O=…,OU=…` when it has none.

/// One DER element: (tag, contents, rest).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, &b[head..end], &b[end..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The short names of the attribute types worth printing (OID 2.5.4.x).
fn attr_name(oid: &[u8]) -> Option<&'static str> {
    match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        _ => None,
    }
}

/// The subject's attributes as (short name, value), in order.
fn subject_attrs(cert: &[u8]) -> Option<Vec<(&'static str, String)>> {
    let (tag, cert, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer,
    // validity, then the subject.
    let (tag, _, r) = element(rest)?;
    rest = r;
    if tag == 0xa0 {
        rest = element(rest)?.2; // serial
    }
    rest = element(rest)?.2; // signature algorithm
    rest = element(rest)?.2; // issuer
    rest = element(rest)?.2; // validity
    let (tag, mut name, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut out = Vec::new();
    while !name.is_empty() {
        let (tag, mut set, r) = element(name)?;
        name = r;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, atv, r) = element(set)?;
            set = r;
            let (tag, oid, r) = element(atv)?;
            if tag != 0x06 {
                return None;
            }
            let (_, value, _) = element(r)?;
            if let Some(short) = attr_name(oid) {
                // UTF8String, PrintableString, IA5String, T61 (as Latin-1
                // would be wrong: keep only valid UTF-8).
                let v = String::from_utf8_lossy(value);
                let v: String = v.chars().filter(|c| !c.is_control()).take(64).collect();
                out.push((short, v));
            }
        }
    }
    Some(out)
}

/// The name a verified client certificate gives its connection: the common
/// name, else `O=…,OU=…` (at most 64 bytes, like an `identify` label).
pub(crate) fn subject_name(cert: &[u8]) -> Option<String> {
    let attrs = subject_attrs(cert)?;
    let name = match attrs.iter().find(|(k, _)| *k == "CN") {
        Some((_, cn)) => cn.clone(),
        None => attrs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    if name.is_empty() {
        return None;
    }
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Some(name[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_of_a_generated_cert() {
        let mut params = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice@lab");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Lab");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_name(cert.der()).as_deref(), Some("alice@lab"));

        let mut params = rcgen::CertificateParams::new(vec!["x.example".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Lab");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_name(cert.der()).as_deref(), Some("O=Lab"));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_name(b""), None);
        assert_eq!(subject_name(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(subject_name(&[0x30, 0x03, 0x30, 0x01]), None);
    }
}
