//! The disk tier against real files: reopen, torn and foreign files, earlier layouts, serving
//! while the load runs, admission, purges and the ban walk.

use super::*;
use bytes::Bytes;

fn rec(url: &str, body: &[u8]) -> Record {
    Record {
        url: Bytes::copy_from_slice(url.as_bytes()),
        tags: Bytes::from_static(b"DQmA Ub"),
        meta: (b"m0".to_vec(), b"meta-one".to_vec()),
        body: Bytes::copy_from_slice(body),
        checked: 7,
    }
}

fn opened(dir: &Path, max: u64) -> Disk {
    let d = Disk::open(dir, max).unwrap();
    d.load(&|_, _| {});
    d
}

fn anyone() -> Frequency {
    Frequency::new(1000)
}

fn plant(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(&name[..2]).join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn objects_survive_reopen_and_torn_files_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let a: Slot = ([1; 16], None);
    let b: Slot = ([2; 16], Some([3; 16]));
    {
        let d = opened(dir.path(), 1 << 20);
        assert_eq!(
            d.write(&a, &rec("/a", b"alpha"), &anyone()).unwrap(),
            Written::Stored
        );
        d.write(&b, &rec("/b?x=1", b"beta"), &anyone()).unwrap();
    }
    // A torn copy of a third object, one shorter than any header, an empty one (a rename that
    // beat its data to disk), and a file that is not the tier's.
    let torn = plant(dir.path(), &Id::of(&([4; 16], None)).name(), b"HIVEEDG3short");
    let stubs = [
        plant(dir.path(), &Id::of(&([5; 16], None)).name(), b"HIVE"),
        plant(dir.path(), &Id::of(&([6; 16], None)).name(), b""),
        plant(dir.path(), "zz-not-ours", b"x"),
    ];
    let d = Disk::open(dir.path(), 1 << 20).unwrap();
    let loaded = d.load(&|_, _| {});
    assert_eq!((loaded.objects, loaded.removed), (2, 4));
    assert_eq!(d.usage().0, 2);
    assert!(!torn.exists() && stubs.iter().all(|p| !p.exists()));
    let r = d.read(&b).unwrap();
    assert_eq!(
        (&r.url[..], &r.body[..], &r.meta.1[..], &r.tags[..], r.checked),
        (&b"/b?x=1"[..], &b"beta"[..], &b"meta-one"[..], &b"DQmA Ub"[..], 7)
    );
    let h = d.head(Id::of(&a)).unwrap();
    assert_eq!(
        (&h.url[..], h.tags.as_str(), h.checked),
        (&b"/a"[..], "DQmA Ub", 7)
    );
    assert_eq!(d.remove_primary(&[2; 16]), 1);
    assert!(d.remove(&a));
    assert_eq!(d.usage(), (0, 0));
}

/// Files of the earlier layouts (no key in them) are removed by the load, once, and never
/// served: under a short id they could answer for another object.
#[test]
fn earlier_layouts_are_removed_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let v2: Slot = ([0x21; 16], Some([0x22; 16]));
    let old_name = format!("{}-{}", hex::encode([0x21u8; 16]), hex::encode([0x22u8; 16]));
    let planted = [
        plant(dir.path(), &old_name, &file::encode_v2(&rec("/two", b"second"))),
        plant(
            dir.path(),
            &Id::of(&v2).name(),
            &file::encode_v2(&rec("/two", b"second")),
        ),
    ];
    let d = Disk::open(dir.path(), 1 << 20).unwrap();
    assert!(d.read(&v2).is_none(), "not served while loading");
    let loaded = d.load(&|_, _| {});
    assert_eq!((loaded.objects, loaded.removed), (0, 2), "{loaded:?}");
    assert!(planted.iter().all(|p| !p.exists()));
    assert!(d.read(&v2).is_none());
}

/// Two keys whose short ids are the same share a file: the one not in it is a miss, never the
/// other's bytes.
#[test]
fn an_id_collision_is_a_miss_not_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let d = opened(dir.path(), 1 << 20);
    let mut other = [1u8; 16];
    other[15] = 2; // same first 8 bytes
    let (a, b): (Slot, Slot) = (([1; 16], None), (other, None));
    assert_eq!(Id::of(&a), Id::of(&b));
    d.write(&a, &rec("/a", b"alpha"), &anyone()).unwrap();
    assert!(d.read(&b).is_none());
    assert_eq!(&d.read(&a).unwrap().body[..], b"alpha");
}

#[test]
fn least_recently_used_objects_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let body = vec![7u8; 1000];
    let one = rec("/x", &body).size();
    let d = opened(dir.path(), one * 3);
    let slots: Vec<Slot> = (0..4u8).map(|i| ([i + 1; 16], None)).collect();
    // Everything is asked for equally often: admission lets each in.
    let f = anyone();
    for s in &slots {
        f.record(&Id::of(s));
    }
    for s in &slots[..3] {
        d.write(s, &rec("/x", &body), &f).unwrap();
    }
    assert!(d.read(&slots[0]).is_some()); // 0 is now the most recent
    f.record(&Id::of(&slots[3]));
    assert_eq!(
        d.write(&slots[3], &rec("/x", &body), &f).unwrap(),
        Written::Stored
    );
    assert!(d.contains(&slots[0]) && !d.contains(&slots[1]));
    assert!(d.contains(&slots[2]) && d.contains(&slots[3]));
    assert_eq!(d.usage(), (3, one * 3));
    assert!(!d.path(Id::of(&slots[1])).exists(), "its file is removed");
}

/// A full tier under a flood of keys asked for once keeps the keys asked for again and again.
#[test]
fn admission_keeps_the_hot_set_under_a_one_hit_wonder_flood() {
    let dir = tempfile::tempdir().unwrap();
    let one = rec("/x", b"body").size();
    let d = opened(dir.path(), one * 10);
    let f = Frequency::new(10);
    let hot: Vec<Slot> = (1..=5u8).map(|i| ([i; 16], None)).collect();
    for s in &hot {
        for _ in 0..3 {
            f.record(&Id::of(s));
        }
        d.write(s, &rec("/hot", b"body"), &f).unwrap();
    }
    let mut refused = 0;
    for i in 0..2000u32 {
        let mut p = [0u8; 16];
        p[..4].copy_from_slice(&(i + 1000).to_le_bytes());
        let s: Slot = (p, None);
        f.record(&Id::of(&s));
        refused += (d.write(&s, &rec("/tail", b"body"), &f).unwrap() == Written::Refused) as u32;
        if i % 50 == 0 {
            for h in &hot {
                f.record(&Id::of(h));
                assert!(
                    d.read(h).is_some(),
                    "hot object {h:?} evicted after {i} tail writes"
                );
            }
        }
    }
    assert!(refused > 1900, "{refused}");
}

/// Until the load is through, lookups, writes, removals and purges reach files it has not
/// indexed yet; afterwards every file is indexed once and counted once.
#[test]
fn serves_and_purges_while_loading() {
    let dir = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = (1..=6u8)
        .map(|i| ([i; 16], if i % 2 == 0 { Some([i; 16]) } else { None }))
        .collect();
    {
        let d = opened(dir.path(), 1 << 20);
        for s in &slots {
            d.write(s, &rec("/x", b"body"), &anyone()).unwrap();
        }
    }
    let d = Disk::open(dir.path(), 1 << 20).unwrap();
    assert!(d.loading() && d.usage().0 == 0);
    assert!(d.contains(&slots[0]));
    assert_eq!(&d.read(&slots[0]).unwrap().body[..], b"body");
    assert!(d.remove(&slots[1]));
    assert_eq!(d.remove_primary(&slots[3].0), 1);
    d.write(&slots[2], &rec("/x", b"rewritten"), &anyone()).unwrap();
    let loaded = d.load(&|_, _| {});
    assert!(!d.loading());
    assert_eq!(d.usage().0, 4);
    assert_eq!(loaded.objects, 2, "two were indexed before the load reached them");
    assert_eq!(&d.read(&slots[2]).unwrap().body[..], b"rewritten");
    assert!(d.read(&slots[1]).is_none() && d.read(&slots[3]).is_none());
    let bytes: u64 = [0, 2, 4, 5]
        .iter()
        .map(|&i| std::fs::metadata(d.path(Id::of(&slots[i]))).unwrap().len())
        .sum();
    assert_eq!(d.usage().1, bytes);
    assert!(!d.contains(&slots[1]), "after the load, only the index answers");
}

#[test]
fn the_walk_finds_every_unchecked_object_and_the_load_reports_check_numbers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let d = opened(dir.path(), 1 << 24);
        for i in 0..50u8 {
            d.write(&([i + 1; 16], None), &rec("/x", b"b"), &anyone())
                .unwrap();
        }
    }
    let d = Disk::open(dir.path(), 1 << 24).unwrap();
    let seen = std::sync::Mutex::new((0, false));
    d.load(&|c, done| *seen.lock().unwrap() = (c, done));
    assert_eq!(
        *seen.lock().unwrap(),
        (7, true),
        "the last report says the load is through"
    );
    for i in (0..50u8).step_by(2) {
        let id = Id::of(&([i + 1; 16], None));
        let (_, written) = d.check_state(id).unwrap();
        d.mark_checked(id, 9, written);
    }
    let found: Vec<Id> = (0..SHARDS).flat_map(|s| d.unchecked(s, 9)).collect();
    assert_eq!(found.len(), 25);
    assert!(
        found.iter().all(|id| (id.primary as u8) % 2 == 0),
        "the odd-numbered were checked"
    );
}
