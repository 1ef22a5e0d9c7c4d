//! SHA-256 for fingerprints and machine identifiers: aws-lc-rs's when the
//! `aws-lc` feature is on (it is set up for the signature checks already;
//! the `sha2` crate would probe the CPU a second time, some 10 µs of every
//! verification process), the `sha2` crate otherwise. The same digests.

/// An incremental SHA-256.
#[derive(Clone)]
pub(crate) struct Sha256 {
    #[cfg(feature = "aws-lc")]
    inner: aws_lc_rs::digest::Context,
    #[cfg(not(feature = "aws-lc"))]
    inner: sha2::Sha256,
}

impl Sha256 {
    /// An empty hash.
    pub(crate) fn new() -> Self {
        #[cfg(feature = "aws-lc")]
        return Self { inner: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256) };
        #[cfg(not(feature = "aws-lc"))]
        return Self { inner: <sha2::Sha256 as sha2::Digest>::new() };
    }

    /// Hashes `data` in.
    pub(crate) fn update(&mut self, data: impl AsRef<[u8]>) {
        let data = data.as_ref();
        #[cfg(feature = "aws-lc")]
        self.inner.update(data);
        #[cfg(not(feature = "aws-lc"))]
        sha2::Digest::update(&mut self.inner, data);
    }

    /// The digest.
    pub(crate) fn finalize(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        #[cfg(feature = "aws-lc")]
        out.copy_from_slice(self.inner.finish().as_ref());
        #[cfg(not(feature = "aws-lc"))]
        out.copy_from_slice(&sha2::Digest::finalize(self.inner));
        out
    }
}

/// The SHA-256 digest of `data`.
pub(crate) fn digest(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    /// The FIPS 180-2 test vectors, in one piece and in pieces.
    #[test]
    fn known_digests() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(crate::core::hex::lower_hex(&super::digest(b"abc")), abc);
        let mut h = super::Sha256::new();
        h.update(b"a");
        h.update(b"");
        h.update(b"bc");
        assert_eq!(crate::core::hex::lower_hex(&h.finalize()), abc);
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(crate::core::hex::lower_hex(&super::digest(b"")), empty);
    }
}
