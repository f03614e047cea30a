use super::*;
use serde_json::json;

fn def(v: serde_json::Value) -> ServiceDef {
    parse_def(&v).expect("parses")
}

fn errors_of(v: serde_json::Value) -> Vec<String> {
    match def(v).validate(Source::Config) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn durations() {
    let cases: &[(&str, Option<u64>)] = &[
        ("500ms", Some(500)),
        ("30s", Some(30_000)),
        ("10m", Some(600_000)),
        ("1h30m", Some(5_400_000)),
        ("2d", Some(172_800_000)),
        (" 5s ", Some(5000)),
        ("0s", Some(0)),
        ("10x", None),
        ("10", None),
        ("m", None),
        ("", None),
        ("-5s", None),
        ("1.5h", None),
        ("99999999999999999999d", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration_ms(text).ok(), *want, "{text:?}");
    }
    for ms in [500, 30_000, 600_000, 5_400_000, 172_800_000, 1234] {
        assert_eq!(parse_duration_ms(&format_duration_ms(ms)).unwrap(), ms);
    }
}

#[test]
fn readiness_parse_and_display() {
    let cases: &[(&str, Option<Readiness>)] = &[
        ("docker-health", Some(Readiness::DockerHealth)),
        ("tcp:8080", Some(Readiness::Tcp { port: 8080 })),
        (
            "http:8080",
            Some(Readiness::Http {
                port: 8080,
                path: "/".into(),
            }),
        ),
        (
            "http:8080/health",
            Some(Readiness::Http {
                port: 8080,
                path: "/health".into(),
            }),
        ),
        ("tcp:0", None),
        ("tcp:70000", None),
        ("tcp:", None),
        ("http:abc/x", None),
        ("running", None),
        ("", None),
    ];
    for (text, want) in cases {
        let got = Readiness::parse(text).ok();
        assert_eq!(got, *want, "{text:?}");
        if let Some(r) = got {
            if *text != "http:8080" {
                assert_eq!(r.to_string(), *text);
            }
        }
    }
}

#[test]
fn minimal_definition_gets_defaults() {
    let s = def(json!({"name": "blog", "members": ["blog-app"]}))
        .validate(Source::Config)
        .unwrap();
    assert_eq!(s.display_name, "blog");
    assert_eq!(s.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
    assert_eq!(s.wake_timeout_ms, 60_000);
    assert_eq!(s.strategy, Strategy::Blocking);
    assert_eq!(s.sleep_mode, SleepMode::Stop);
    assert!(s.sleepable);
    assert_eq!(s.source, Source::Config);
    assert!(s.shadowed.is_empty());
}

#[test]
fn full_definition() {
    let s = def(json!({
        "name": "blog",
        "display_name": "My Blog",
        "members": ["blog-app", "blog-db", "blog-migrate", "blog-cache"],
        "optional": ["blog-cache"],
        "one_shot": ["blog-migrate"],
        "depends_on": {"blog-app": ["blog-db", "blog-migrate"], "blog-migrate": ["blog-db"]},
        "ready": {"blog-app": "http:8080/health", "blog-db": "tcp:5432"},
        "idle_timeout": "15m",
        "wake_timeout": "30s",
        "sleep_mode": "pause",
        "strategy": "dynamic",
        "theme": "ghost",
        "ignore_user_agents": ["UptimeRobot"],
        "ignore_paths": ["/healthz"],
        "sleepable": false
    }))
    .validate(Source::Api)
    .unwrap();
    assert_eq!(s.display_name, "My Blog");
    assert_eq!(s.idle_timeout_ms, 900_000);
    assert_eq!(s.wake_timeout_ms, 30_000);
    assert_eq!(s.sleep_mode, SleepMode::Pause);
    assert_eq!(s.strategy, Strategy::Dynamic);
    assert!(!s.sleepable);
    assert!(!s.is_required("blog-cache"));
    assert!(s.is_required("blog-app"));
    assert!(s.is_one_shot("blog-migrate"));
    assert_eq!(
        s.start_waves(),
        vec![
            vec!["blog-cache".to_owned(), "blog-db".to_owned()],
            vec!["blog-migrate".to_owned()],
            vec!["blog-app".to_owned()],
        ]
    );
    assert_eq!(s.stop_waves()[0], vec!["blog-app".to_owned()]);
    assert_eq!(
        s.ready_rule("blog-app", true),
        ReadyRule::Http {
            port: 8080,
            path: "/health".into()
        }
    );
    assert_eq!(s.ready_rule("blog-cache", true), ReadyRule::DockerHealth);
    assert_eq!(
        s.ready_rule("blog-cache", false),
        ReadyRule::Tcp { port: None }
    );
}

#[test]
fn validation_messages_name_service_and_field() {
    let base = |extra: serde_json::Value| {
        let mut v = json!({"name": "blog", "members": ["app", "db", "cache"]});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            base(json!({"idle_timeout": "10x"})),
            r#"service "blog": idle_timeout: "10x" is not a duration"#,
        ),
        (
            base(json!({"idle_timeout": "0s"})),
            r#"service "blog": idle_timeout: must be more than 0"#,
        ),
        (
            base(json!({"wake_timeout": "soon"})),
            r#"service "blog": wake_timeout: "soon" is not a duration"#,
        ),
        (
            base(json!({"wake_timeout": "60d"})),
            r#"service "blog": wake_timeout: "60d" is too long"#,
        ),
        (
            base(json!({"strategy": "lazy"})),
            r#"service "blog": strategy: unknown strategy "lazy""#,
        ),
        (
            base(json!({"sleep_mode": "hibernate"})),
            r#"service "blog": sleep_mode: unknown sleep_mode "hibernate""#,
        ),
        (
            base(json!({"depends_on": {"app": ["dbb"]}})),
            r#"service "blog": depends_on: "app" depends on unknown member "dbb""#,
        ),
        (
            base(json!({"depends_on": {"ghost": ["db"]}})),
            r#"service "blog": depends_on: unknown member "ghost""#,
        ),
        (
            base(json!({"depends_on": {"app": ["db"], "db": ["app"]}})),
            r#"service "blog": depends_on: dependency cycle: app -> db -> app"#,
        ),
        (
            base(json!({"optional": ["db"], "depends_on": {"app": ["db"]}})),
            r#"service "blog": optional: "db" is optional but required member "app" depends on it"#,
        ),
        (
            base(json!({"optional": ["nope"]})),
            r#"service "blog": optional: unknown member "nope""#,
        ),
        (
            base(json!({"one_shot": ["nope"]})),
            r#"service "blog": one_shot: unknown member "nope""#,
        ),
        (
            base(json!({"ready": {"nope": "tcp:1"}})),
            r#"service "blog": ready: unknown member "nope""#,
        ),
        (
            base(json!({"ready": {"app": "tcp:0"}})),
            r#"service "blog": ready: member "app": "tcp:0": "0" is not a port"#,
        ),
        (
            base(json!({"optional": ["app", "db", "cache"]})),
            r#"service "blog": optional: every member is optional"#,
        ),
        (
            base(json!({"members": []})),
            r#"service "blog": members: is empty"#,
        ),
        (
            json!({"name": "blog"}),
            r#"service "blog": members: is empty"#,
        ),
        (
            base(json!({"members": ["a", "a"]})),
            r#"service "blog": members: "a" is listed twice"#,
        ),
        (
            base(json!({"selector": "app=blog"})),
            r#"service "blog": selector: members and selector are exclusive"#,
        ),
        (
            json!({"name": "blog", "selector": "app"}),
            r#"service "blog": selector: "app" is not a label selector"#,
        ),
        (
            base(json!({"name": "Blog_1"})),
            r#"service "Blog_1": name: "Blog_1" is not a slug"#,
        ),
        (
            base(json!({"theme": "../x"})),
            r#"service "blog": theme: "../x" is not a theme name"#,
        ),
        (
            base(json!({"ignore_paths": ["healthz"]})),
            r#"service "blog": ignore_paths: "healthz" does not start with '/'"#,
        ),
        (
            base(json!({"ignore_user_agents": [""]})),
            r#"service "blog": ignore_user_agents: contains an empty entry"#,
        ),
    ];
    for (v, want) in cases {
        let errs = errors_of(v.clone());
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{v}: want {want:?}, got {errs:?}"
        );
    }
}

#[test]
fn all_errors_reported_at_once() {
    let errs = errors_of(json!({
        "name": "blog", "members": ["app"], "idle_timeout": "x", "strategy": "y", "sleep_mode": "z"
    }));
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn optional_dependency_of_optional_member_is_fine() {
    let errs = errors_of(json!({
        "name": "blog", "members": ["app", "admin", "cache"],
        "optional": ["admin", "cache"], "depends_on": {"admin": ["cache"], "app": []}
    }));
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn unknown_json_fields_are_rejected_with_service_name() {
    let (defs, errs) = parse_def_list(&json!([
        {"name": "good", "members": ["a"]},
        {"name": "bad", "members": ["a"], "idle-timeout": "5m"},
        {"members": 3}
    ]));
    assert_eq!(defs.len(), 1);
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].service, "bad");
    assert!(errs[0].to_string().contains("idle-timeout"), "{}", errs[0]);
    assert_eq!(errs[1].service, "#2");
    let (_, errs) = parse_def_list(&json!({"name": "x"}));
    assert_eq!(
        errs[0].to_string(),
        r#"service "*": services: must be a list"#
    );
    assert_eq!(parse_def_list(&serde_json::Value::Null), (vec![], vec![]));
}

#[test]
fn selector_services_resolve_members_later() {
    let s = def(json!({
        "name": "media", "selector": "stack=media",
        "depends_on": {"jellyfin": ["db"]}, "optional": ["db"]
    }))
    .validate(Source::Config)
    .unwrap();
    assert!(s.members.is_empty());
    assert_eq!(
        s.selector,
        Some(Selector {
            key: "stack".into(),
            value: "media".into()
        })
    );
    // Resolution re-validates member references.
    let errs = s
        .with_members(vec!["jellyfin".into(), "db".into()])
        .unwrap_err();
    assert!(errs[0]
        .to_string()
        .contains("\"db\" is optional but required member"));
    let errs = s.with_members(vec![]).unwrap_err();
    assert!(errs[0].to_string().contains("no container carries"));
    let ok = def(
        json!({"name": "media", "selector": "stack=media", "depends_on": {"jellyfin": ["db"]}}),
    )
    .validate(Source::Config)
    .unwrap()
    .with_members(vec!["jellyfin".into(), "db".into(), "db".into()])
    .unwrap();
    assert_eq!(ok.members, vec!["db".to_owned(), "jellyfin".to_owned()]);
    let c = LabeledContainer::new("jellyfin", [("stack", "media")]);
    let cat = Catalog::build(
        &[def(json!({"name": "media", "selector": "stack=media"}))],
        &[],
        &LabelDefs::default(),
    );
    assert_eq!(cat.services_of(&c).len(), 1);
}

// ---------------------------------------------------------------------------
// Labels

fn lc(name: &str, labels: &[(&str, &str)]) -> LabeledContainer {
    LabeledContainer::new(name, labels.iter().copied())
}

#[test]
fn labels_group_by_service_and_include_stopped_containers() {
    let containers = vec![
        lc(
            "blog-app",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "blog"),
                ("wakedock.idle-timeout", "10m"),
                ("wakedock.wake-timeout", "30s"),
                ("wakedock.strategy", "dynamic"),
                ("wakedock.sleep-mode", "pause"),
                ("wakedock.depends-on", "blog-db, blog-migrate"),
                ("wakedock.ready", "http:8080/health"),
                ("wakedock.display-name", "The Blog"),
                ("wakedock.ignore-user-agents", "UptimeRobot,Pingdom"),
                ("wakedock.ignore-paths", "/healthz,/metrics"),
                ("com.docker.compose.project", "blog"),
            ],
        ),
        lc(
            "blog-db",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "blog"),
                ("wakedock.ready", "tcp:5432"),
                ("wakedock.idle-timeout", "10m"),
            ],
        ),
        lc(
            "blog-migrate",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "blog"),
                ("wakedock.one-shot", "true"),
                ("wakedock.depends-on", "blog-db"),
            ],
        ),
        lc(
            "blog-cache",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "blog"),
                ("wakedock.optional", "true"),
            ],
        ),
        lc("solo", &[("wakedock.enable", "true")]),
        lc(
            "off",
            &[
                ("wakedock.enable", "false"),
                ("wakedock.idle-timeout", "bad"),
            ],
        ),
        lc("unmanaged", &[("foo", "bar")]),
    ];
    let ld = defs_from_labels(&containers);
    assert!(ld.errors.is_empty(), "{:?}", ld.errors);
    assert_eq!(ld.defs.len(), 2);
    let blog = ld.defs.iter().find(|d| d.name == "blog").unwrap();
    let s = blog.validate(Source::Labels).unwrap();
    assert_eq!(
        s.members,
        vec!["blog-app", "blog-cache", "blog-db", "blog-migrate"]
    );
    assert_eq!(s.display_name, "The Blog");
    assert_eq!(s.idle_timeout_ms, 600_000);
    assert_eq!(s.wake_timeout_ms, 30_000);
    assert_eq!(s.strategy, Strategy::Dynamic);
    assert_eq!(s.sleep_mode, SleepMode::Pause);
    assert_eq!(s.ignore_user_agents, vec!["UptimeRobot", "Pingdom"]);
    assert_eq!(s.ignore_paths, vec!["/healthz", "/metrics"]);
    assert!(s.is_one_shot("blog-migrate"));
    assert!(!s.is_required("blog-cache"));
    assert_eq!(s.ready.get("blog-db"), Some(&Readiness::Tcp { port: 5432 }));
    assert_eq!(
        s.start_waves(),
        vec![
            vec!["blog-cache", "blog-db"],
            vec!["blog-migrate"],
            vec!["blog-app"]
        ]
    );
    let solo = ld.defs.iter().find(|d| d.name == "solo").unwrap();
    assert_eq!(solo.members, Some(vec!["solo".to_owned()]));
}

#[test]
fn bad_label_values() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("wakedock.idle-timeout", "10x")],
            r#"service "svc": wakedock.idle-timeout: container "c1": "10x" is not a duration"#,
        ),
        (
            &[("wakedock.wake-timeout", "forever")],
            r#"service "svc": wakedock.wake-timeout: container "c1": "forever" is not a duration"#,
        ),
        (
            &[("wakedock.strategy", "eager")],
            r#"service "svc": wakedock.strategy: container "c1": unknown strategy "eager""#,
        ),
        (
            &[("wakedock.sleep-mode", "nap")],
            r#"service "svc": wakedock.sleep-mode: container "c1": unknown sleep_mode "nap""#,
        ),
        (
            &[("wakedock.optional", "maybe")],
            r#"service "svc": wakedock.optional: container "c1": "maybe" is not true or false"#,
        ),
        (
            &[("wakedock.one-shot", "2")],
            r#"service "svc": wakedock.one-shot: container "c1": "2" is not true or false"#,
        ),
        (
            &[("wakedock.sleepable", "x")],
            r#"service "svc": wakedock.sleepable: container "c1": "x" is not true or false"#,
        ),
        (
            &[("wakedock.ready", "tcp:http")],
            r#"service "svc": wakedock.ready: container "c1": "tcp:http": "http" is not a port"#,
        ),
        (
            &[("wakedock.ready", "ping")],
            r#"service "svc": wakedock.ready: container "c1": "ping" is not a readiness rule"#,
        ),
        (
            &[("wakedock.idle_timeout", "5m")],
            r#"service "svc": wakedock.idle_timeout: container "c1": unknown label; did you mean wakedock.idle-timeout?"#,
        ),
    ];
    for (extra, want) in cases {
        let mut labels = vec![("wakedock.enable", "true"), ("wakedock.service", "svc")];
        labels.extend_from_slice(extra);
        let ld = defs_from_labels(&[lc("c1", &labels)]);
        assert!(ld.defs.is_empty(), "{want}");
        let errs: Vec<String> = ld.errors["svc"].iter().map(ToString::to_string).collect();
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}, got {errs:?}"
        );
    }
    // A bad `wakedock.enable` drops the whole service.
    let ld = defs_from_labels(&[
        lc(
            "a",
            &[
                ("wakedock.enable", "yes please"),
                ("wakedock.service", "svc"),
            ],
        ),
        lc(
            "b",
            &[("wakedock.enable", "true"), ("wakedock.service", "svc")],
        ),
    ]);
    assert!(ld.defs.is_empty());
    assert_eq!(
        ld.errors["svc"][0].to_string(),
        r#"service "svc": wakedock.enable: container "a": "yes please" is not true or false"#
    );
}

#[test]
fn service_wide_labels_must_agree() {
    let ld = defs_from_labels(&[
        lc(
            "a",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "svc"),
                ("wakedock.idle-timeout", "10m"),
            ],
        ),
        lc(
            "b",
            &[
                ("wakedock.enable", "true"),
                ("wakedock.service", "svc"),
                ("wakedock.idle-timeout", "5m"),
            ],
        ),
    ]);
    assert!(ld.defs.is_empty());
    assert_eq!(
        ld.errors["svc"][0].to_string(),
        r#"service "svc": wakedock.idle-timeout: container "b": "5m" disagrees with "10m" on container "a""#
    );
}

#[test]
fn label_dependency_on_unknown_member_fails_validation() {
    let ld = defs_from_labels(&[lc(
        "app",
        &[
            ("wakedock.enable", "true"),
            ("wakedock.service", "svc"),
            ("wakedock.depends-on", "db"),
        ],
    )]);
    let errs = ld.defs[0].validate(Source::Labels).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        r#"service "svc": depends_on: "app" depends on unknown member "db""#
    );
}

// ---------------------------------------------------------------------------
// Precedence

fn named(name: &str, idle: &str) -> ServiceDef {
    def(json!({"name": name, "members": [format!("{name}-app")], "idle_timeout": idle}))
}

#[test]
fn precedence_config_over_api_over_labels() {
    let labels = LabelDefs {
        defs: vec![named("a", "3m"), named("b", "3m"), named("c", "3m")],
        errors: BTreeMap::new(),
    };
    let api = vec![named("a", "2m"), named("b", "2m")];
    let config = vec![named("a", "1m")];
    let cat = Catalog::build(&config, &api, &labels);
    assert!(cat.errors.is_empty(), "{:?}", cat.errors);
    let table = [
        (
            "a",
            Source::Config,
            vec![Source::Api, Source::Labels],
            60_000,
        ),
        ("b", Source::Api, vec![Source::Labels], 120_000),
        ("c", Source::Labels, vec![], 180_000),
    ];
    for (name, source, shadowed, idle) in table {
        let s = &cat.services[name];
        assert_eq!(s.source, source, "{name}");
        assert_eq!(s.shadowed, shadowed, "{name}");
        assert_eq!(s.idle_timeout_ms, idle, "{name}");
    }
    let json = serde_json::to_value(&cat.services["a"]).unwrap();
    assert_eq!(json["source"], "config");
    assert_eq!(json["shadowed"], json!(["api", "labels"]));
}

#[test]
fn invalid_winner_does_not_fall_back() {
    let labels = LabelDefs {
        defs: vec![named("a", "3m")],
        errors: BTreeMap::new(),
    };
    let cat = Catalog::build(&[named("a", "10x")], &[], &labels);
    assert!(cat.services.is_empty());
    assert_eq!(cat.errors.len(), 1);
    assert!(cat.errors[0]
        .to_string()
        .starts_with(r#"service "a": idle_timeout: "10x""#));
}

#[test]
fn shadowed_invalid_labels_still_reported() {
    let mut errors = BTreeMap::new();
    errors.insert(
        "a".to_owned(),
        vec![ValidationError::new("a", "wakedock.strategy", "bad")],
    );
    let cat = Catalog::build(
        &[named("a", "1m")],
        &[],
        &LabelDefs {
            defs: vec![],
            errors,
        },
    );
    assert_eq!(cat.services["a"].shadowed, vec![Source::Labels]);
    assert_eq!(cat.errors.len(), 1);
}

#[test]
fn duplicate_within_source_reported() {
    let cat = Catalog::build(
        &[named("a", "1m"), named("a", "2m")],
        &[],
        &LabelDefs::default(),
    );
    assert_eq!(cat.services["a"].idle_timeout_ms, 60_000);
    assert_eq!(
        cat.errors[0].to_string(),
        r#"service "a": name: defined twice in config; the first definition is used"#
    );
}

#[test]
fn wake_config_parses() {
    let c = WakeConfig::from_json(&json!({
        "services": [{"name": "a", "members": ["x"]}],
        "self_container": "wakedock"
    }))
    .unwrap();
    assert_eq!(c.self_container.as_deref(), Some("wakedock"));
    assert_eq!(parse_def_list(&c.services).0.len(), 1);
    assert_eq!(
        WakeConfig::from_json(&json!({})).unwrap(),
        WakeConfig::default()
    );
    assert!(WakeConfig::from_json(&json!({"servics": []})).is_err());
}

#[test]
fn schedules_and_offsets_are_validated_and_read_from_labels() {
    let def = parse_def(&json!({
        "name": "office", "members": ["app"],
        "schedule": ["mon-fri 08:00-18:00", "someday 1-2"], "utc_offset": "+1"
    }))
    .unwrap();
    let errs = def.validate(Source::Config).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["schedule[1]", "utc_offset"], "{errs:?}");

    let labels = defs_from_labels(&[LabeledContainer::new(
        "app",
        [
            ("wakedock.enable", "true"),
            ("wakedock.service", "office"),
            ("wakedock.schedule", "mon-fri 08:00-18:00, sat 10:00-12:00"),
            ("wakedock.utc-offset", "+01:00"),
        ],
    )]);
    let s = labels.defs[0].validate(Source::Labels).unwrap();
    assert_eq!(s.schedule.len(), 2);
    assert_eq!(s.utc_offset_min, 60);
    let shown = serde_json::to_value(&s).unwrap();
    assert_eq!(
        shown["schedule"],
        json!(["mon-fri 08:00-18:00", "sat 10:00-12:00"])
    );
}

#[test]
fn a_compose_stack_is_one_service_ordered_by_composes_depends_on() {
    let compose = |name: &str, service: &str, deps: &str| {
        let project = name.split('-').next().unwrap();
        let mut labels = vec![
            ("wakedock.enable", "true"),
            ("wakedock.idle-timeout", "5s"),
            ("com.docker.compose.project", project),
            ("com.docker.compose.service", service),
        ];
        if !deps.is_empty() {
            labels.push(("com.docker.compose.depends_on", deps));
        }
        lc(name, &labels)
    };
    let defs = defs_from_labels(&[
        compose(
            "shop-app-1",
            "app",
            "db:service_healthy:false,migrate:service_completed_successfully:false",
        ),
        compose("shop-db-1", "db", ""),
        compose("shop-migrate-1", "migrate", "db:service_healthy:false"),
        // Another project with the same service names stays apart.
        compose("other-app-1", "app", ""),
    ]);
    assert!(defs.errors.is_empty(), "{:?}", defs.errors);
    let names: Vec<&str> = defs.defs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["other", "shop"]);
    let shop = &defs.defs[1];
    assert_eq!(
        shop.members.as_deref().unwrap(),
        ["shop-app-1", "shop-db-1", "shop-migrate-1"]
    );
    assert_eq!(
        shop.depends_on["shop-app-1"],
        ["shop-db-1", "shop-migrate-1"]
    );
    assert_eq!(shop.depends_on["shop-migrate-1"], ["shop-db-1"]);
    assert_eq!(shop.one_shot, ["shop-migrate-1"]);
    let service = shop.validate(Source::Labels).expect("valid");
    assert_eq!(
        service.start_waves(),
        vec![
            vec!["shop-db-1".to_owned()],
            vec!["shop-migrate-1".to_owned()],
            vec!["shop-app-1".to_owned()]
        ]
    );
}
