//! The access rules over every combination of the facts that matter.

use super::*;

const ALICE: &str = "0123456789abcdef0123456789abcdef";
const VIKTOR: &str = "fedcba9876543210fedcba9876543210";

fn tokens() -> Tokens {
    Tokens::parse(
        &[
            "# operators",
            &format!("alice:operator:{ALICE}"),
            "",
            &format!("viktor:viewer:{VIKTOR}"),
        ],
        "test",
    )
    .unwrap()
}

fn policy(with_tokens: bool) -> AccessPolicy {
    AccessPolicy {
        tokens: if with_tokens {
            tokens()
        } else {
            Tokens::default()
        },
        hosts: AllowedHosts::new("10.1.2.3:9464".parse().ok(), &["sfwd.example".into()]),
    }
}

const PATHS: [&str; 5] = [
    "/healthz",
    "/metrics",
    "/",
    "/api/control-points",
    "/api/control-points/x/store",
];
const HOSTS: [Option<&str>; 5] = [
    None,
    Some("127.0.0.1:9464"),
    Some("SFWD.example"),
    Some("[::1]:9464"),
    Some("evil.example:9464"),
];
fn authorizations() -> Vec<Option<String>> {
    vec![
        None,
        Some(format!("Bearer {ALICE}")),
        Some(format!("bearer {VIKTOR}")),
        Some("Bearer 0000000000000000000000".into()),
        Some(format!("Basic {ALICE}")),
    ]
}
const ORIGINS: [Option<&str>; 4] = [
    None,
    Some("http://127.0.0.1:9464"),
    Some("http://evil.example:9464"),
    Some("null"),
];
const SITES: [Option<&str>; 4] = [
    None,
    Some("same-origin"),
    Some("same-site"),
    Some("cross-site"),
];
fn peers() -> Vec<Option<SocketAddr>> {
    vec![
        None,
        Some("127.0.0.1:50000".parse().unwrap()),
        Some("[::1]:50000".parse().unwrap()),
        Some("192.168.1.9:50000".parse().unwrap()),
    ]
}

/// Every combination, with the invariants each answer must satisfy.
#[test]
fn every_combination_follows_the_rules() {
    let mut admitted_actions = 0;
    for with_tokens in [false, true] {
        let policy = policy(with_tokens);
        for path in PATHS {
            for acts in [false, true] {
                for host in HOSTS {
                    for authorization in authorizations() {
                        for origin in ORIGINS {
                            for site in SITES {
                                for marked in [false, true] {
                                    for peer in peers() {
                                        let facts = RequestFacts {
                                            path,
                                            acts,
                                            host,
                                            authorization: authorization.as_deref(),
                                            origin,
                                            fetch_site: site,
                                            marked,
                                            peer,
                                        };
                                        let answer = policy.decide(&facts);
                                        check(with_tokens, &facts, &answer);
                                        if acts && answer.is_ok() && path.starts_with("/api") {
                                            admitted_actions += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(admitted_actions > 0, "some actions are admitted");
}

fn check(with_tokens: bool, f: &RequestFacts<'_>, answer: &Result<Caller, Denied>) {
    let open = matches!(f.path, "/healthz" | "/metrics");
    let foreign = f.host.is_some_and(|h| h.starts_with("evil"));
    let ctx = || format!("tokens={with_tokens} {f:?} → {answer:?}");
    if open {
        assert!(answer.is_ok(), "probes and metrics are open: {}", ctx());
        return;
    }
    if foreign {
        assert_eq!(
            answer.as_ref().unwrap_err(),
            &Denied::ForeignHost(f.host.unwrap().into()),
            "{}",
            ctx()
        );
        return;
    }
    if f.path == "/" && !f.acts {
        assert!(answer.is_ok(), "the page is static: {}", ctx());
        return;
    }
    let token = f.authorization.and_then(bearer);
    let principal = match token {
        Some(ALICE) => Some(("alice", Role::Operator)),
        Some(VIKTOR) => Some(("viktor", Role::Viewer)),
        _ => None,
    };
    let Ok(caller) = answer else {
        // Refusals are checked through what admission requires below.
        return;
    };
    if with_tokens {
        let (name, role) =
            principal.unwrap_or_else(|| panic!("admitted without a known token: {}", ctx()));
        assert_eq!(caller.principal.as_deref(), Some(name), "{}", ctx());
        assert_eq!(caller.role, role, "{}", ctx());
        if f.acts {
            assert_eq!(role, Role::Operator, "a viewer never acts: {}", ctx());
        }
    } else {
        assert_eq!(caller.principal, None, "{}", ctx());
        if f.acts {
            assert!(
                f.peer.is_some_and(|p| p.ip().is_loopback()),
                "without tokens, actions only from loopback: {}",
                ctx()
            );
        }
    }
    if f.acts {
        assert!(
            matches!(f.fetch_site, None | Some("same-origin")),
            "no cross-site action: {}",
            ctx()
        );
        assert!(
            f.origin.is_none()
                || f.origin == Some("http://127.0.0.1:9464") && f.host == Some("127.0.0.1:9464"),
            "an action's Origin is this server: {}",
            ctx()
        );
        assert!(
            f.authorization.is_some() || f.marked,
            "an action without a token is marked: {}",
            ctx()
        );
    }
    assert_eq!(caller.from, f.peer);
}

/// The other direction: what meets every rule is admitted.
#[test]
fn what_meets_the_rules_is_admitted() {
    let loopback = Some("127.0.0.1:1".parse().unwrap());
    let remote = Some("192.168.1.9:1".parse().unwrap());
    let open = policy(false);
    let base = RequestFacts {
        path: "/api/control-points/x/store",
        acts: true,
        host: Some("127.0.0.1:9464"),
        marked: true,
        peer: loopback,
        ..Default::default()
    };
    assert!(open.decide(&base).is_ok());
    assert!(open
        .decide(&RequestFacts {
            origin: Some("http://127.0.0.1:9464"),
            fetch_site: Some("same-origin"),
            ..base.clone()
        })
        .is_ok());
    assert_eq!(
        open.decide(&RequestFacts {
            peer: remote,
            ..base.clone()
        }),
        Err(Denied::NotLoopback(remote))
    );
    assert_eq!(
        open.decide(&RequestFacts {
            marked: false,
            ..base.clone()
        }),
        Err(Denied::Unmarked)
    );
    assert!(open
        .decide(&RequestFacts {
            acts: false,
            peer: remote,
            marked: false,
            ..base.clone()
        })
        .is_ok());

    let closed = policy(true);
    let alice = format!("Bearer {ALICE}");
    let viktor = format!("Bearer {VIKTOR}");
    let with = |auth: &'static str| RequestFacts {
        authorization: Some(auth),
        marked: false,
        peer: remote,
        ..base.clone()
    };
    let alice: &'static str = Box::leak(alice.into_boxed_str());
    let viktor: &'static str = Box::leak(viktor.into_boxed_str());
    assert_eq!(
        closed.decide(&with(alice)).unwrap().principal.as_deref(),
        Some("alice")
    );
    assert_eq!(
        closed.decide(&with(viktor)),
        Err(Denied::ViewerActs("viktor".into()))
    );
    assert_eq!(
        closed
            .decide(&RequestFacts {
                acts: false,
                ..with(viktor)
            })
            .unwrap()
            .role,
        Role::Viewer
    );
    assert_eq!(
        closed.decide(&RequestFacts {
            authorization: None,
            ..with(alice)
        }),
        Err(Denied::NoToken)
    );
    assert_eq!(
        closed.decide(&RequestFacts {
            acts: false,
            authorization: None,
            ..with(alice)
        }),
        Err(Denied::NoToken),
        "with tokens, reading needs one too"
    );
    assert_eq!(
        closed.decide(&RequestFacts {
            fetch_site: Some("cross-site"),
            ..with(alice)
        }),
        Err(Denied::CrossSite("Sec-Fetch-Site is `cross-site`".into()))
    );
}

#[test]
fn token_entries_say_what_is_wrong() {
    let err = |entries: &[&str]| Tokens::parse(entries, "file:t").unwrap_err().to_string();
    assert!(err(&["alice"]).contains("entry 1: expected `principal:role:token`"));
    assert!(err(&["#", "alice:admin:0123456789abcdef"]).contains("entry 2: role `admin`"));
    assert!(err(&["alice:operator:short"]).contains("shorter than 16"));
    assert!(err(&["a b:viewer:0123456789abcdef"]).contains("principal `a b`"));
    assert!(err(&[
        "alice:operator:0123456789abcdef",
        "bob:viewer:0123456789abcdef"
    ])
    .contains("also another entry's"));
    let ok = Tokens::parse(&["bob:viewer:0123:4567:89ab:cdef"], "x").unwrap();
    assert_eq!(ok.find("0123:4567:89ab:cdef").unwrap().principal, "bob");
    assert!(ok.find("0123:4567:89ab:cdeF").is_none());
    assert!(ok.find("").is_none());
}

#[test]
fn token_sources() {
    assert_eq!(
        TokenSource::parse("file:/etc/sfwd/tokens"),
        Ok(TokenSource::File("/etc/sfwd/tokens".into()))
    );
    assert_eq!(
        TokenSource::parse("env:SFWD_TOKENS"),
        Ok(TokenSource::Env("SFWD_TOKENS".into()))
    );
    assert!(TokenSource::parse("/etc/tokens")
        .unwrap_err()
        .contains("file:PATH"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(
        &path,
        format!("# who\nalice:operator:{ALICE}\n\nbob:viewer:x\n"),
    )
    .unwrap();
    let err = Tokens::load(&TokenSource::File(path.clone())).unwrap_err();
    assert!(
        err.to_string().contains("entry 4") && err.to_string().contains("bob"),
        "{err}"
    );
    let missing = Tokens::load(&TokenSource::File(dir.path().join("none"))).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the token file"),
        "{missing}"
    );
}

#[test]
fn host_names() {
    assert_eq!(host_name("[::1]:9464"), "::1");
    assert_eq!(host_name("a.example:80"), "a.example");
    assert_eq!(host_name("a.example"), "a.example");
    assert_eq!(host_name("::1"), "::1");
    let any = AllowedHosts::new(None, &["*".into()]);
    assert!(any.allows("whatever"));
    let some = AllowedHosts::new("0.0.0.0:9464".parse().ok(), &["Box:1".into()]);
    assert!(some.allows("box:9464") && some.allows("localhost") && !some.allows("0.0.0.0"));
}
