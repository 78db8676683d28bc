//! argon2id password hashing on a fixed pool of threads with reused memory.

use std::cell::RefCell;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{
    Output, ParamsString, PasswordHash as Phc, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use pwreset_domain::ports::{HashError, PasswordHasher};
use pwreset_domain::{Password, PasswordHash};
use tokio::sync::oneshot;

/// argon2 parameters below the OWASP minimum (m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argon2id parameters must be at least m=19456 KiB, t=2, p=1 (got m={m}, t={t}, p={p})")]
pub struct HashParamsError {
    pub m: u32,
    pub t: u32,
    pub p: u32,
}

type Job = Box<dyn FnOnce() + Send>;

/// Makes the calling thread run only on CPU nothing else on the machine wants (Linux
/// `SCHED_IDLE`, or nice 19 where that is refused), so password hashes soak up idle CPU
/// without delaying the request handlers: reads stay fast while completions saturate the
/// pool, and completions slow down, not the API, when the box is busy. Measured in
/// docs/benchmarks.md against nice 0 and nice 10. Set in-process through the
/// `thread-priority` crate (`pthread_setschedparam`, then `setpriority`, which on Linux
/// applies to the calling thread only); no process is spawned. Best effort: where both are
/// refused, hashing runs at normal priority. Elsewhere than Linux it does nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if to_idle().is_err() {
        let _ = to_nice_19();
    }
}

/// Moves the calling thread to `SCHED_IDLE`.
#[cfg(target_os = "linux")]
fn to_idle() -> Result<(), thread_priority::Error> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    match set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        Ok(()) => Ok(()),
        // The crate sets the policy and then the nice value (0 for SCHED_IDLE, where it
        // has no effect); from a niced process only the second step is refused.
        Err(_) if thread_schedule_policy().is_ok_and(|p| p == idle) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Keeps the calling thread on the normal policy at nice 19, the lowest priority it has.
#[cfg(target_os = "linux")]
fn to_nice_19() -> Result<(), thread_priority::Error> {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    // `Min` on the normal policy is the largest nice value, 19.
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    )
}

thread_local! {
    /// Each hashing thread's argon2 working memory, allocated once and reused: without
    /// this, every hash allocates and frees ~19 MiB and the allocator's arenas keep far
    /// more than that resident.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2 of `password` with `salt` into `out`, using this thread's memory.
fn hash_into(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    MEMORY.with(|memory| {
        let mut blocks = memory.borrow_mut();
        if blocks.len() != params.block_count() {
            *blocks = vec![Block::default(); params.block_count()];
        }
        argon2
            .hash_password_into_with_memory(password, salt, out, &mut blocks[..])
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
}

/// Whether `password` matches the argon2id PHC `phc`, computed in this thread's memory
/// (verification allocates nothing, like hashing). Other algorithms or versions go through
/// the crate's own verification.
fn verify_phc(argon2: &Argon2<'_>, password: &[u8], phc: &Phc<'_>) -> anyhow::Result<bool> {
    let (Some(expected), Some(salt)) = (phc.hash, phc.salt) else {
        anyhow::bail!("stored hash has no salt or output");
    };
    if phc.algorithm != Algorithm::Argon2id.ident() || phc.version != Some(Version::V0x13.into()) {
        return Ok(argon2.verify_password(password, phc).is_ok());
    }
    let params = Params::try_from(phc).map_err(|e| anyhow::anyhow!("stored params: {e}"))?;
    let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt_buf = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = vec![0u8; expected.len()];
    hash_into(&stored, &params, password, salt_raw, &mut out)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))? == expected)
}

/// argon2id of `password` with `salt` into a PHC string, using this thread's memory.
fn hash_phc(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &SaltString,
) -> anyhow::Result<String> {
    let mut salt_buf = [0u8; 64];
    let salt_raw = salt
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; 32];
    hash_into(argon2, params, password, salt_raw, &mut out)?;
    let phc = Phc {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
    };
    Ok(phc.to_string())
}

/// Hashes with argon2id on its own fixed pool of threads (one per allowed concurrent
/// hash), fed by a queue. A fixed pool keeps both CPU and memory bounded: each hash needs
/// ~19 MiB, and a thread's allocator arena keeps its block for the next hash, so memory
/// stays at threads x 19 MiB however many completions arrive at once, and the async
/// workers never wait on a hash.
#[derive(Clone)]
pub struct Argon2Hasher {
    params: Params,
    jobs: Arc<Mutex<Sender<Job>>>,
    threads: usize,
    /// Jobs sent and not yet started by a thread.
    queued: Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Argon2Hasher(m={}, t={}, p={}, threads={})",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost(),
            self.threads
        )
    }
}

impl Argon2Hasher {
    pub const MIN_M_KIB: u32 = 19_456;
    pub const MIN_T: u32 = 2;

    /// A hasher with the given memory (KiB), iterations and lanes, running at most
    /// `concurrency` hashes at once (0 means one per available core).
    ///
    /// # Errors
    /// When the parameters are below the OWASP minimum or invalid for argon2.
    pub fn new(m_kib: u32, t: u32, p: u32, concurrency: usize) -> Result<Self, HashParamsError> {
        let err = HashParamsError { m: m_kib, t, p };
        if m_kib < Self::MIN_M_KIB || t < Self::MIN_T || p < 1 {
            return Err(err);
        }
        let params = Params::new(m_kib, t, p, None).map_err(|_| err.clone())?;
        let concurrency = if concurrency == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            concurrency
        };
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..concurrency {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("pwreset-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every hasher handle is gone: the pool ends.
                            Err(_) => return,
                        }
                    }
                });
            if spawned.is_err() {
                return Err(err);
            }
        }
        Ok(Self {
            params,
            jobs: Arc::new(Mutex::new(tx)),
            threads: concurrency,
            queued: Arc::default(),
        })
    }

    /// The OWASP minimum: m=19456 KiB, t=2, p=1, one hash per core at a time.
    ///
    /// # Panics
    /// Never: these parameters are the floor `new` accepts.
    #[must_use]
    pub fn owasp_minimum() -> Self {
        Self::new(Self::MIN_M_KIB, Self::MIN_T, 1, 0).expect("the minimum is valid")
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Argon2<'static>) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        use std::sync::atomic::Ordering;
        let argon2 = self.argon2();
        let (tx, rx) = oneshot::channel();
        let queued = self.queued.clone();
        let sent = std::time::Instant::now();
        let job: Job = Box::new(move || {
            let waiting = queued.fetch_sub(1, Ordering::Relaxed) - 1;
            metrics::gauge!("pwreset_hash_queue_length").set(f64::from(waiting));
            metrics::histogram!("pwreset_hash_wait_seconds").record(sent.elapsed().as_secs_f64());
            let _ = tx.send(work(argon2));
        });
        let waiting = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("pwreset_hash_queue_length").set(f64::from(waiting));
        self.jobs
            .lock()
            .map_err(|_| anyhow::anyhow!("the hashing pool is poisoned"))?
            .send(job)
            .map_err(|_| anyhow::anyhow!("the hashing pool has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("a hashing thread died"))?
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, HashError> {
        let secret = password.expose_secret().to_owned();
        let params = self.params.clone();
        self.run(move |argon2| {
            let salt = SaltString::generate(&mut OsRng);
            Ok(PasswordHash::new(hash_phc(
                &argon2,
                &params,
                secret.as_bytes(),
                &salt,
            )?))
        })
        .await
        .map_err(HashError::new)
    }

    async fn verify(&self, password: &Password, hash: &PasswordHash) -> Result<bool, HashError> {
        let secret = password.expose_secret().to_owned();
        let phc = hash.as_str().to_owned();
        self.run(move |argon2| {
            let parsed =
                Phc::new(&phc).map_err(|e| anyhow::anyhow!("stored hash is not PHC: {e}"))?;
            verify_phc(&argon2, secret.as_bytes(), &parsed)
        })
        .await
        .map_err(HashError::new)
    }

    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        let Ok(phc) = Phc::new(hash.as_str()) else {
            return true;
        };
        // Only weaker hashes are upgraded: one instance configured lower than the rest (a
        // mistake, or a rolling deploy) must not downgrade the hashes of those who sign in
        // there, nor make hashes flip between two settings.
        let weaker =
            |name: &str, want: u32| phc.params.get_decimal(name).is_none_or(|got| got < want);
        phc.algorithm != Algorithm::Argon2id.ident()
            || phc.version != Some(Version::V0x13.into())
            || weaker("m", self.params.m_cost())
            || weaker("t", self.params.t_cost())
            || weaker("p", self.params.p_cost())
            || phc.hash.is_none_or(|h| h.len() != 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = Argon2Hasher::owasp_minimum();
        let pw = Password::new("correct horse battery staple");
        let hash = h.hash(&pw).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify(&pw, &hash).await.unwrap());
        assert!(!h.verify(&Password::new("wrong"), &hash).await.unwrap());
        assert_ne!(h.hash(&pw).await.unwrap(), hash, "salts differ");
        assert!(h.verify(&pw, &PasswordHash::new("garbage")).await.is_err());
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_verify_in_reused_memory() {
        let current = Argon2Hasher::owasp_minimum();
        let pw = Password::new("correct horse battery staple");
        // An older, weaker argon2id hash (below today's minimum, so made directly).
        let phc_of = |algorithm, password: &[u8]| {
            let a = Argon2::new(
                algorithm,
                Version::V0x13,
                Params::new(8 * 1024, 1, 1, None).unwrap(),
            );
            let salt = SaltString::generate(&mut OsRng);
            argon2::PasswordHasher::hash_password(&a, password, &salt)
                .unwrap()
                .to_string()
        };
        let old = PasswordHash::new(phc_of(Algorithm::Argon2id, pw.expose_secret().as_bytes()));
        assert!(old.as_str().starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        // Alternate parameters on one pool, so its memory is resized both ways.
        for _ in 0..2 {
            assert!(current.verify(&pw, &old).await.unwrap());
            assert!(!current.verify(&Password::new("wrong"), &old).await.unwrap());
            let fresh = current.hash(&pw).await.unwrap();
            assert!(current.verify(&pw, &fresh).await.unwrap());
        }
        // An argon2i hash (another algorithm) goes through the crate's own check.
        let argon2i = phc_of(Algorithm::Argon2i, b"pw");
        let verify = |pw: &'static str, phc: String| {
            let current = &current;
            async move {
                current
                    .verify(&Password::new(pw), &PasswordHash::new(phc))
                    .await
                    .unwrap()
            }
        };
        assert!(verify("pw", argon2i.clone()).await);
        assert!(!verify("px", argon2i).await);
    }

    #[tokio::test]
    async fn a_hash_leaves_the_runtime_that_asked_for_it_free() {
        // `#[tokio::test]` runs one thread. Were the hash computed on it, the spawned task
        // would hold that thread until the hash was done, so this task could only resume
        // after it finished; off the runtime, this task resumes while it is still running.
        let h = std::sync::Arc::new(Argon2Hasher::owasp_minimum());
        let hasher = h.clone();
        let hashing = tokio::spawn(async move {
            hasher
                .hash(&Password::new("correct horse battery staple"))
                .await
        });
        tokio::task::yield_now().await;
        assert!(
            !hashing.is_finished(),
            "the hash ran on the runtime's own thread"
        );
        let hash = hashing.await.unwrap().unwrap();
        assert!(
            h.verify(&Password::new("correct horse battery staple"), &hash)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_use_the_configured_parameters_as_argon2_itself_checks_them() {
        // Above the minimum, so the parameters are not argon2's defaults; the check is the
        // argon2 crate's own verifier reading the PHC string, not this module's.
        let h = Argon2Hasher::new(Argon2Hasher::MIN_M_KIB + 1024, 3, 1, 1).unwrap();
        assert_eq!(
            format!("{h:?}"),
            "Argon2Hasher(m=20480, t=3, p=1, threads=1)"
        );
        let hash = h
            .hash(&Password::new("correct horse battery staple"))
            .await
            .unwrap();
        assert!(
            hash.as_str().starts_with("$argon2id$v=19$m=20480,t=3,p=1$"),
            "{}",
            hash.as_str()
        );
        let phc = Phc::new(hash.as_str()).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery staple", &phc)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let h = Argon2Hasher::owasp_minimum();
        let long = "é".repeat(256);
        let hash = h.hash(&Password::new(long.clone())).await.unwrap();
        assert!(h.verify(&Password::new(long.clone()), &hash).await.unwrap());
        let prefix: String = long.chars().take(255).collect();
        assert!(!h.verify(&Password::new(prefix), &hash).await.unwrap());
    }

    /// `SCHED_IDLE` in `/proc/<pid>/task/<tid>/stat`'s policy field.
    #[cfg(target_os = "linux")]
    const SCHED_IDLE: u32 = 5;

    /// The calling thread's scheduling policy and nice value, as the kernel reports them.
    #[cfg(target_os = "linux")]
    fn own_schedule() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name, which is in parentheses: state is field 3, nice
        // field 19, policy field 41 (proc(5)).
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        (fields[38].parse().unwrap(), fields[16].parse().unwrap())
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_idle_priority_and_nothing_else_does() {
        let before = std::thread::spawn(own_schedule).join().unwrap();
        assert!(
            before.0 != SCHED_IDLE && before.1 < 19,
            "this test needs a process at a normal priority to tell a difference: {before:?}"
        );
        let h = Argon2Hasher::new(Argon2Hasher::MIN_M_KIB, Argon2Hasher::MIN_T, 1, 2).unwrap();
        for _ in 0..4 {
            let (policy, nice) = h.run(|_| Ok(own_schedule())).await.unwrap();
            assert!(
                policy == SCHED_IDLE || nice == 19,
                "a hashing thread runs at policy {policy}, nice {nice}"
            );
            eprintln!("hashing thread: policy {policy} (5 is SCHED_IDLE), nice {nice}");
        }
        assert_eq!(own_schedule(), before, "the caller's thread is untouched");
        assert_eq!(
            std::thread::spawn(own_schedule).join().unwrap(),
            before,
            "so are new threads"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn each_step_sets_what_it_says_on_the_calling_thread_only() {
        let before = own_schedule();
        let idle = std::thread::spawn(|| to_idle().map(|()| own_schedule()))
            .join()
            .unwrap();
        // Containers may refuse SCHED_IDLE; then the fallback is what runs.
        if let Ok((policy, _)) = idle {
            assert_eq!(policy, SCHED_IDLE);
        }
        let niced = std::thread::spawn(|| to_nice_19().map(|()| own_schedule()))
            .join()
            .unwrap();
        assert_eq!(niced, Ok((0, 19)), "the normal policy at nice 19");
        assert_eq!(own_schedule(), before);
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_or_algorithms_need_a_rehash() {
        let current = Argon2Hasher::new(Argon2Hasher::MIN_M_KIB, 3, 1, 1).unwrap();
        let weaker = Argon2Hasher::owasp_minimum();
        let pw = Password::new("correct horse battery staple");
        let fresh = current.hash(&pw).await.unwrap();
        assert!(
            !current.needs_rehash(&fresh),
            "made with today's parameters"
        );
        let old = weaker.hash(&pw).await.unwrap();
        assert!(current.needs_rehash(&old), "t=2 is not t=3");
        assert!(!weaker.needs_rehash(&old));
        let tail = old
            .as_str()
            .split_once("$m=")
            .unwrap()
            .1
            .split_once('$')
            .unwrap()
            .1;
        for other in [
            format!("$argon2i$v=19$m=19456,t=3,p=1${tail}"),
            format!("$argon2id$v=16$m=19456,t=3,p=1${tail}"),
            format!("$argon2id$v=19$m=19455,t=3,p=1${tail}"),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
            "garbage".to_owned(),
        ] {
            assert!(
                current.needs_rehash(&PasswordHash::new(other.clone())),
                "{other}"
            );
        }
        // Today's parameters, or stronger ones: never rehashed (never downgraded).
        for same_or_stronger in [
            format!("$argon2id$v=19$m=19456,t=3,p=1${tail}"),
            format!("$argon2id$v=19$m=65536,t=3,p=1${tail}"),
            format!("$argon2id$v=19$m=19456,t=4,p=2${tail}"),
        ] {
            assert!(
                !current.needs_rehash(&PasswordHash::new(same_or_stronger.clone())),
                "{same_or_stronger}"
            );
        }
    }

    #[test]
    fn parameters_below_the_owasp_minimum_are_refused() {
        assert!(Argon2Hasher::new(19_455, 2, 1, 1).is_err());
        assert!(Argon2Hasher::new(19_456, 1, 1, 1).is_err());
        assert!(Argon2Hasher::new(19_456, 2, 0, 1).is_err());
        assert!(Argon2Hasher::new(65_536, 3, 2, 1).is_ok());
    }
}
