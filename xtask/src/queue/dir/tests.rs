//! The directory queue's protocol under races, deaths and bad files, on a real
//! filesystem (a temporary directory).

use super::super::TaskKind;
use super::*;

fn queue() -> (tempfile::TempDir, DirQueue) {
    let tmp = tempfile::tempdir().unwrap();
    let queue = DirQueue::open(tmp.path()).unwrap();
    (tmp, queue)
}

fn task(n: u32) -> Task {
    Task {
        id: format!("20261202T000000.00{n}Z-bench-0000{n:02}"),
        ..Task::new(TaskKind::Bench, vec!["--quick".into()])
    }
}

fn states(queue: &DirQueue) -> Vec<(State, String)> {
    queue
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.state, e.name))
        .collect()
}

#[test]
fn a_task_goes_from_pending_through_a_runner_to_done_oldest_first() {
    let (_tmp, queue) = queue();
    let (first, second) = (task(1), task(2));
    queue.add(&second).unwrap();
    queue.add(&first).unwrap();
    assert!(
        queue
            .add(&first)
            .unwrap_err()
            .to_string()
            .contains("already pending")
    );
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    let Some(Claimed::Task(claimed)) = runner.claim(3).unwrap() else {
        panic!("a task")
    };
    assert_eq!(
        (claimed.id.as_str(), claimed.deliveries),
        (first.id.as_str(), 1)
    );
    let listed = queue.find(&first.id).unwrap().unwrap();
    assert_eq!(
        (listed.state, listed.runner),
        (State::Running, Some(runner.id.clone()))
    );
    runner
        .finish(claimed, Outcome::Done { summary: None })
        .unwrap();
    let Some(Claimed::Task(next)) = runner.claim(3).unwrap() else {
        panic!("a task")
    };
    runner.finish(next, Outcome::Failed("boom".into())).unwrap();
    assert!(runner.claim(3).unwrap().is_none());
    assert_eq!(
        states(&queue),
        vec![
            (State::Done, first.id.clone()),
            (State::Failed, second.id.clone())
        ]
    );
    let failed = queue.find(&second.id).unwrap().unwrap().task.unwrap();
    assert_eq!(failed.error.as_deref(), Some("boom"));
    runner.leave().unwrap();
    assert!(queue.runner_dirs().unwrap().is_empty());
}

#[test]
fn two_runners_never_hold_one_task() {
    let (_tmp, queue) = queue();
    for n in 0..20 {
        queue.add(&task(n)).unwrap();
    }
    let taken = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let runner = queue.join(Duration::from_secs(30)).unwrap();
                while let Some(Claimed::Task(t)) = runner.claim(3).unwrap() {
                    taken.lock().unwrap().push(t.id.clone());
                    runner.finish(t, Outcome::Done { summary: None }).unwrap();
                }
                runner.leave().unwrap();
            });
        }
    });
    let mut taken = taken.into_inner().unwrap();
    taken.sort();
    let before = taken.len();
    taken.dedup();
    assert_eq!((before, taken.len()), (20, 20));
}

#[test]
fn a_dead_runners_task_is_taken_again_until_its_deliveries_run_out() {
    let (_tmp, queue) = queue();
    let t = task(1);
    queue.add(&t).unwrap();
    let alive = queue.join(Duration::from_secs(30)).unwrap();
    for delivery in 1..=2 {
        // A runner takes it and dies: dropped without leaving, as SIGKILL leaves it,
        // its lock released with its file.
        let dead = queue.join(Duration::from_secs(30)).unwrap();
        let claimed = dead.claim(2).unwrap();
        assert!(matches!(claimed, Some(Claimed::Task(t)) if t.deliveries == delivery));
        drop(dead);
        assert_eq!(alive.reclaim_dead().unwrap(), vec![t.id.clone()]);
    }
    let Some(Claimed::Failed { why, .. }) = alive.claim(2).unwrap() else {
        panic!("failed after two deliveries")
    };
    assert!(why.contains("delivered 2 times"), "{why}");
    assert_eq!(states(&queue), vec![(State::Failed, t.id.clone())]);
}

#[test]
fn a_live_runner_keeps_its_task_however_late_its_lease() {
    let (_tmp, queue) = queue();
    queue.add(&task(1)).unwrap();
    // Its lease ran out long ago (a stopped process), but its lock says it lives.
    let slow = queue.join(Duration::from_millis(1)).unwrap();
    assert!(matches!(slow.claim(3).unwrap(), Some(Claimed::Task(_))));
    std::thread::sleep(Duration::from_millis(5));
    let other = queue.join(Duration::from_secs(30)).unwrap();
    assert!(other.reclaim_dead().unwrap().is_empty());
    assert_eq!(states(&queue), vec![(State::Running, task(1).id)]);
    assert!(slow.renew().unwrap());
}

#[test]
fn a_task_filed_before_its_runner_died_is_not_run_again() {
    let (_tmp, queue) = queue();
    let t = task(1);
    queue.add(&t).unwrap();
    let dead = queue.join(Duration::from_secs(30)).unwrap();
    let Some(Claimed::Task(claimed)) = dead.claim(3).unwrap() else {
        panic!("a task")
    };
    // Filed as done, then killed before removing its held copy.
    write_atomically(
        &queue.root().join("done").join(format!("{}.json", t.id)),
        &claimed.to_json(),
    )
    .unwrap();
    drop(dead);
    let alive = queue.join(Duration::from_secs(30)).unwrap();
    assert!(alive.reclaim_dead().unwrap().is_empty());
    assert_eq!(states(&queue), vec![(State::Done, t.id.clone())]);
    // A pending file reusing a filed id fails; the done task is untouched.
    queue_file(&queue, &t);
    assert!(
        matches!(alive.claim(3).unwrap(), Some(Claimed::Failed { why, .. }) if why.contains("ids are used once"))
    );
    assert_eq!(queue.find(&t.id).unwrap().unwrap().state, State::Done);
}

/// Claims until pending is empty: `only` is the one real task (run and filed done); the
/// rest fail, and their names and reasons are returned.
fn claim_all(runner: &Runner<'_>, only: &Task) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    loop {
        match runner.claim(3).unwrap() {
            Some(Claimed::Failed { name, why }) => failed.push((name, why)),
            Some(Claimed::Task(t)) => {
                assert_eq!(t.id, only.id);
                runner.finish(t, Outcome::Done { summary: None }).unwrap();
            }
            None => return failed,
        }
    }
}

fn queue_file(queue: &DirQueue, task: &Task) {
    fs::write(
        queue
            .root()
            .join("pending")
            .join(format!("{}.json", task.id)),
        task.to_json(),
    )
    .unwrap();
}

#[test]
fn a_file_that_is_no_task_fails_with_why_and_the_queue_goes_on() {
    let (_tmp, queue) = queue();
    let pending = queue.root().join("pending");
    fs::write(pending.join("0-garbage.json"), b"{not json").unwrap();
    let mut wrong = task(5);
    wrong.id = "another-name".into();
    fs::write(pending.join("1-misnamed.json"), wrong.to_json()).unwrap();
    queue.add(&task(9)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", pending.join("2-link.json")).unwrap();
    let huge = File::create(pending.join("3-huge.json")).unwrap();
    huge.set_len(MAX_TASK_BYTES as u64 + 1).unwrap();
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    let failed = claim_all(&runner, &task(9));
    assert_eq!(failed.len(), 4, "{failed:?}");
    let why = |name: &str| &failed.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(
        why("2-link.json").starts_with("not a task file"),
        "{failed:?}"
    );
    assert!(
        why("0-garbage").starts_with("not a task document"),
        "{failed:?}"
    );
    assert!(
        why("1-misnamed").contains("is not its file's name"),
        "{failed:?}"
    );
    assert!(why("3-huge").contains("bytes, at most"), "{failed:?}");
    let listed = queue.find("0-garbage").unwrap().unwrap();
    assert_eq!(listed.state, State::Failed);
    assert!(listed.task.unwrap_err().starts_with("not a task document"));
    let link = queue.find("2-link.json").unwrap().unwrap();
    assert!(link.task.unwrap_err().starts_with("not a task file"));
}

#[test]
fn cancel_retry_and_remove_move_tasks_between_states() {
    let (_tmp, queue) = queue();
    let t = task(1);
    queue.add(&t).unwrap();
    queue.cancel(&t.id).unwrap();
    let cancelled = queue.find(&t.id).unwrap().unwrap();
    assert_eq!(cancelled.state, State::Failed);
    assert_eq!(cancelled.task.unwrap().error.as_deref(), Some("cancelled"));
    assert!(
        queue
            .cancel(&t.id)
            .unwrap_err()
            .to_string()
            .contains("is failed, not pending")
    );
    queue.retry(&t.id).unwrap();
    assert_eq!(states(&queue), vec![(State::Pending, t.id.clone())]);
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    assert!(matches!(runner.claim(3).unwrap(), Some(Claimed::Task(_))));
    assert!(
        queue
            .remove(&t.id)
            .unwrap_err()
            .to_string()
            .contains("is running")
    );
    // Leaving puts the held task back, its delivery uncounted.
    runner.leave().unwrap();
    let back = queue.find(&t.id).unwrap().unwrap();
    assert_eq!(
        (back.state, back.task.unwrap().deliveries),
        (State::Pending, 0)
    );
    queue.remove(&t.id).unwrap();
    assert!(states(&queue).is_empty());
    assert!(queue.remove("../../etc/passwd").is_err());
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{path:?}");
}

/// FIFOs and links where the queue keeps its small files (a failed task's reason, a
/// runner's lock, lease and status) once hung `queue list` and every idle runner's
/// reclaim; now each is read as what it is not (no reason, no lease, no status, a dead
/// runner it cannot judge) and both return.
#[test]
fn fifos_and_links_in_every_queue_place_neither_hang_nor_stop_the_queue() {
    let (_tmp, queue) = queue();
    let failed = queue.root().join("failed");
    std::os::unix::fs::symlink("/dev/zero", failed.join("0-zero.json")).unwrap();
    mkfifo(&failed.join("0-zero.error"));
    fs::write(failed.join("1-bad.json"), b"{not json").unwrap();
    std::os::unix::fs::symlink("/dev/zero", failed.join("1-bad.error")).unwrap();
    let stranger = queue.root().join("running").join("stranger");
    fs::create_dir(&stranger).unwrap();
    mkfifo(&stranger.join("lock"));
    mkfifo(&stranger.join("lease"));
    let held = task(3);
    fs::write(stranger.join(format!("{}.json", held.id)), held.to_json()).unwrap();
    mkfifo(&stranger.join(format!("{}.status", held.id)));
    let (done, result) = std::sync::mpsc::channel();
    let root = queue.root().to_path_buf();
    std::thread::spawn(move || {
        let queue = DirQueue::open(&root).unwrap();
        let listed = queue.list().map(|l| l.len());
        let runner = queue.join(Duration::from_secs(30)).unwrap();
        let reclaimed = runner.reclaim_dead().map(|r| r.len());
        let _ = done.send((listed, reclaimed));
    });
    let (listed, reclaimed) = result
        .recv_timeout(Duration::from_secs(30))
        .expect("listing or reclaiming the queue hung on a FIFO");
    assert_eq!(listed.unwrap(), 3, "two failed entries and the held task");
    // The stranger's lock is no lock file: it is not judged dead, its task stays.
    assert_eq!(reclaimed.unwrap(), 0);
    let zero = queue.find("0-zero").unwrap().unwrap();
    assert!(zero.task.unwrap_err().contains("not a task file"));
}

/// A 250-byte name in pending/ once overflowed its `.error` file's name and stopped the
/// runner, its bytes lost; now it fails under a shortened name with its bytes kept, and
/// the next task runs.
#[test]
fn a_name_too_long_for_its_error_file_fails_kept_and_the_queue_goes_on() {
    let (_tmp, queue) = queue();
    let pending = queue.root().join("pending");
    let long = "x".repeat(245);
    fs::write(pending.join(format!("{long}.json")), b"poison bytes").unwrap();
    fs::write(pending.join(format!("{long}-odd")), b"odd bytes").unwrap();
    queue.add(&task(7)).unwrap();
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    let failed = claim_all(&runner, &task(7));
    assert_eq!(failed.len(), 2, "{failed:?}");
    let kept: Vec<Vec<u8>> = fs::read_dir(queue.root().join("failed"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert!(kept.contains(&b"poison bytes".to_vec()), "{kept:?}");
    assert!(kept.contains(&b"odd bytes".to_vec()), "{kept:?}");
    let listed = queue.list().unwrap();
    assert_eq!(
        listed.iter().filter(|e| e.state == State::Failed).count(),
        2
    );
    assert_eq!(queue.find(&task(7).id).unwrap().unwrap().state, State::Done);
}

/// A `retry` interrupted after taking its task out of failed (hidden) and before queueing
/// it: a later sweep (a runner joining, or an idle one looking for dead peers) finishes
/// it once the retry is old enough to be dead, and only one sweeper takes each copy.
#[test]
fn an_interrupted_retry_is_finished_by_a_later_sweep() {
    let (_tmp, queue) = queue();
    let (t, again) = (task(1), task(2));
    for t in [&t, &again] {
        queue.add(t).unwrap();
        queue.cancel(&t.id).unwrap();
    }
    let failed = queue.root().join("failed");
    let aside = |t: &Task| failed.join(format!(".retry-{}.json", t.id));
    for t in [&t, &again] {
        fs::rename(failed.join(format!("{}.json", t.id)), aside(t)).unwrap();
    }
    // `again` was queued anew meanwhile: its aside copy only goes.
    queue.add(&again).unwrap();
    assert_eq!(states(&queue), vec![(State::Pending, again.id.clone())]);
    let fresh = queue.join(Duration::from_secs(30)).unwrap();
    assert!(aside(&t).exists(), "a retry in progress was taken over");
    fresh.leave().unwrap();
    // A sweeper that took `again`'s copy and died: its claim is hidden again (first
    // sweep), then dropped since the task is pending anew (second).
    let claimed = failed.join(format!(".retry-{}.json.4242-1", again.id));
    fs::rename(aside(&again), &claimed).unwrap();
    // As if 10 minutes had passed: ages are ctimes, which a test cannot set.
    queue.sweep_leftovers(Duration::ZERO);
    queue.sweep_leftovers(Duration::ZERO);
    assert_eq!(
        states(&queue),
        vec![
            (State::Pending, t.id.clone()),
            (State::Pending, again.id.clone())
        ]
    );
    let back = queue.find(&t.id).unwrap().unwrap().task.unwrap();
    assert_eq!((back.deliveries, back.error), (0, None));
    assert!(!aside(&t).exists() && !aside(&again).exists() && !claimed.exists());
}

/// A task given back is pending again, its delivery counted, and no copy is left held
/// (which a peer would take back too). The order that keeps a crash from leaving two
/// copies (rewrite where held, then one rename) is not observable here.
#[test]
fn a_task_given_back_is_pending_with_no_copy_held() {
    let (_tmp, queue) = queue();
    let t = task(1);
    queue.add(&t).unwrap();
    let runner = queue.join(Duration::from_secs(30)).unwrap();
    let Some(Claimed::Task(held)) = runner.claim(3).unwrap() else {
        panic!("claimed nothing")
    };
    runner.finish(held, Outcome::GivenBack).unwrap();
    assert!(task_files(&runner.dir).unwrap().is_empty());
    let back = queue.find(&t.id).unwrap().unwrap();
    assert_eq!(
        (back.state, back.task.unwrap().deliveries),
        (State::Pending, 1)
    );
}

/// Interrupted atomic writes leave `.tmp*` files that nothing reads; a joining runner
/// removes the old ones, never a fresh one (a write that may be in progress).
#[test]
fn old_temporary_files_are_swept_when_a_runner_joins() {
    let (_tmp, queue) = queue();
    let pending = queue.root().join("pending");
    let (old, fresh) = (pending.join(".tmpOLD123"), pending.join(".tmpNEW456"));
    fs::write(&old, b"half a task").unwrap();
    fs::write(&fresh, b"a task being written").unwrap();
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(long_ago)
        .unwrap();
    let _runner = queue.join(Duration::from_secs(30)).unwrap();
    assert!(!old.exists(), "an old temporary file was left");
    assert!(fresh.exists(), "a fresh temporary file was removed");
}
