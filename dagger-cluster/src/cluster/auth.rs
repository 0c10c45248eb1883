//! Proof of the cluster token: HMAC-SHA256 over the coordinator's random
//! challenge and the joining rank, compared in constant time. The token
//! itself never crosses the network.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The proof a rank sends for `nonce`.
pub fn proof(token: &[u8], nonce: &[u8; 32], rank: u32) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    mac.update(nonce);
    mac.update(&rank.to_le_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `proof` is right for `nonce` and `rank` (constant time).
pub fn verify(token: &[u8], nonce: &[u8; 32], rank: u32, proof: &[u8; 32]) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key length");
    mac.update(nonce);
    mac.update(&rank.to_le_bytes());
    mac.verify_slice(proof).is_ok()
}

/// A fresh random challenge.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("the OS random source works");
    n
}

/// A fresh random token (hex), as the launcher makes one.
pub fn new_token() -> String {
    nonce().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_token_and_rank_verify() {
        let n = nonce();
        let p = proof(b"token", &n, 3);
        assert!(verify(b"token", &n, 3, &p));
        assert!(!verify(b"other", &n, 3, &p), "wrong token");
        assert!(!verify(b"token", &n, 2, &p), "proof bound to the rank");
        assert!(
            !verify(b"token", &nonce(), 3, &p),
            "proof bound to the challenge"
        );
        assert_eq!(new_token().len(), 64);
        assert_ne!(new_token(), new_token());
    }
}
