// A small persistent thread pool for the cpu backend: the caller plus n-1 workers share the
// tasks of one job, claimed one at a time from an atomic word.
//
// The caller never waits for a worker that has not claimed a task: it runs whatever tasks are
// left itself and waits only for tasks already under way. So a worker that the OS has not
// scheduled (on a machine shared with other work) costs nothing but its share of parallelism.
//
// Waiting is spin-then-sleep: a worker that finds no work spins (with pause) for a short while,
// then sleeps on a condition variable; the caller waiting for the last task does the same with a
// shorter spin. How long a worker spins depends on whether a call holds the pool (ContextPool's
// lease): within a call (a forward pass) the next job follows within microseconds, so it spins up
// to HELD_SPIN_US; once the call has returned, the next job is a whole host-side step away (or
// never), so it spins only IDLE_SPIN_US and then sleeps, leaving the core to whoever needs it
// (another engine in the process, the JVM). A sleeping worker costs the next job little: the caller
// starts on the tasks at once and the worker joins when it wakes.
//
// One pool per context (ContextPool below, the cpu backend's spec_context::backend_state), shared
// by every model, EAGLE layer, draft heads and spec kernel on the context, so that a draft model's
// calls and the target's never run two sets of workers against each other.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "../core/env_option.hpp"
#include "../core/internal.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SPECULA_CPU_RELAX() _mm_pause()
#else
#define SPECULA_CPU_RELAX() ((void)0)
#endif

namespace specula::cpu {

class ThreadPool {
public:
    using Fn = void (*)(void *ctx, int task, int thread);
    static constexpr int MAX_TASKS = (1 << 20) - 1;
    static constexpr int64_t HELD_SPIN_US = 200; // a worker's spin while a call holds the pool
    static constexpr int64_t IDLE_SPIN_US = 10;  // and after the call has returned
    // The spins in effect: the constants above, or SPECULA_POOL_HELD_SPIN_US / SPECULA_POOL_IDLE_SPIN_US (0..100000),
    // read once, for measuring other values without a rebuild (bench/RESULTS.md, "Idle spin").
    static int64_t held_spin_us() {
        static const int64_t v = env_int64("SPECULA_POOL_HELD_SPIN_US", HELD_SPIN_US, 0, 100000);
        return v;
    }
    static int64_t idle_spin_us() {
        static const int64_t v = env_int64("SPECULA_POOL_IDLE_SPIN_US", IDLE_SPIN_US, 0, 100000);
        return v;
    }
    static constexpr int64_t DONE_SPIN_US = 50;  // the caller's spin for the job's last tasks

    // Starts up to n_threads - 1 workers; fewer when the system refuses to start more.
    explicit ThreadPool(int n_threads) {
        for (int i = 1; i < n_threads; i++) {
            try {
                workers_.emplace_back([this, i] { worker_main(i); });
            } catch (...) {
                break;
            }
        }
    }

    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_.store(true, std::memory_order_release);
        }
        cv_.notify_all();
        for (auto &t : workers_) t.join();
    }

    ThreadPool(const ThreadPool &) = delete;
    ThreadPool &operator=(const ThreadPool &) = delete;

    int size() const { return (int)workers_.size() + 1; }

    // Whether this thread is running a pool's task (work started from there runs inline).
    static bool in_task() { return t_task_thread >= 0; }

    // Whether a call holds the pool (ContextPool::Lease): only sets how long idle workers spin.
    void set_held(bool held) { held_.store(held, std::memory_order_relaxed); }

    // Runs fn(ctx, task, thread) for every task in [0, n_tasks), thread in [0, size()), and
    // returns when all are done. One job at a time: callers hold the pool (ContextPool::Lease).
    // Called from inside a task (a nested job), it runs the tasks inline as that task's thread.
    // The first exception a task throws is rethrown here once every task has finished.
    void run(int n_tasks, Fn fn, void *ctx) {
        if (n_tasks <= 0) return;
        if (t_task_thread >= 0 || workers_.empty() || n_tasks == 1 || n_tasks > MAX_TASKS) {
            const int thread = t_task_thread >= 0 ? t_task_thread : 0;
            for (int t = 0; t < n_tasks; t++) fn(ctx, t, thread);
            return;
        }
        fn_ = fn;
        ctx_ = ctx;
        failed_ = nullptr;
        done_.store(0, std::memory_order_relaxed);
        gen_ = (gen_ + 1) & GEN_MASK;
        {
            std::lock_guard<std::mutex> lock(mu_);
            job_.store(pack(gen_, (uint64_t)n_tasks, 0), std::memory_order_release);
        }
        cv_.notify_all();
        work(0, gen_);
        auto finished = [&] { return done_.load(std::memory_order_acquire) == n_tasks; };
        if (!finished() && !spin_until(finished, [] { return DONE_SPIN_US; })) {
            std::unique_lock<std::mutex> lock(mu_);
            done_cv_.wait(lock, finished);
        }
        if (failed_) std::rethrow_exception(failed_);
    }

    // f(task, thread) for every task.
    template <class F>
    void parallel_for(int n_tasks, F &&f) {
        using Fd = std::remove_reference_t<F>;
        run(n_tasks, [](void *c, int task, int thread) { (*(Fd *)c)(task, thread); }, (void *)&f);
    }

private:
    // job_: generation (24 bits) | task count (20) | next task (20).
    static constexpr uint64_t GEN_MASK = (1u << 24) - 1;
    static uint64_t pack(uint64_t gen, uint64_t n, uint64_t next) { return gen << 40 | n << 20 | next; }
    static uint64_t gen_of(uint64_t j) { return j >> 40; }
    static uint64_t n_of(uint64_t j) { return (j >> 20) & MAX_TASKS; }
    static uint64_t next_of(uint64_t j) { return j & MAX_TASKS; }

    // The thread index of the task this thread is running, -1 outside tasks (nested jobs run inline).
    static inline thread_local int t_task_thread = -1;

    // Spins until pred() or until limit() microseconds have passed; returns pred().
    template <class Pred, class Limit>
    static bool spin_until(Pred pred, Limit limit) {
        auto start = std::chrono::steady_clock::now();
        for (;;) {
            for (int i = 0; i < 64; i++) {
                if (pred()) return true;
                SPECULA_CPU_RELAX();
            }
            if (std::chrono::steady_clock::now() - start > std::chrono::microseconds(limit())) return pred();
        }
    }

    // Claims and runs tasks of generation g until none is left. A claim succeeds only while g is
    // the current job, and the job cannot end (nor its fields change) while a claimed task runs.
    void work(int thread, uint64_t g) {
        uint64_t cur = job_.load(std::memory_order_acquire);
        for (;;) {
            if (gen_of(cur) != g || next_of(cur) >= n_of(cur)) return;
            if (!job_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            t_task_thread = thread;
            try {
                fn_(ctx_, (int)next_of(cur), thread);
            } catch (...) { // carried to the caller: a worker must not end the process
                std::lock_guard<std::mutex> lock(mu_);
                if (!failed_) failed_ = std::current_exception();
            }
            t_task_thread = -1;
            if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == (int)n_of(cur)) {
                std::lock_guard<std::mutex> lock(mu_);
                done_cv_.notify_all();
            }
            cur = job_.load(std::memory_order_acquire);
        }
    }

    void worker_main(int id) {
        uint64_t seen = 0;
        for (;;) {
            auto ready = [&] {
                return stop_.load(std::memory_order_acquire) || gen_of(job_.load(std::memory_order_acquire)) != seen;
            };
            auto spin = [&] { return held_.load(std::memory_order_relaxed) ? held_spin_us() : idle_spin_us(); };
            if (!spin_until(ready, spin)) {
                std::unique_lock<std::mutex> lock(mu_);
                cv_.wait(lock, ready);
            }
            if (stop_.load(std::memory_order_acquire)) return;
            seen = gen_of(job_.load(std::memory_order_acquire));
            work(id, seen);
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    std::atomic<uint64_t> job_{0};
    std::atomic<int> done_{0};
    std::atomic<bool> stop_{false};
    std::atomic<bool> held_{false};
    uint64_t gen_ = 0; // the caller's
    Fn fn_ = nullptr;
    void *ctx_ = nullptr;
    std::exception_ptr failed_; // the job's first exception (under mu_)
};

// The one pool of a cpu context, shared by every model and spec kernel on it, at the context's
// thread count (0 = all cores). A call that runs parallel work holds the pool for its whole length
// through a Lease: calls on one context from several threads take turns (a forward pass keeps one
// thread count and per-thread scratch from its first job to its last), and a thread that already
// holds the pool (a call made from inside another) goes straight through. The pool is started on
// first use and restarted, between calls, when the context's thread count changes.
class ContextPool {
public:
    class Lease {
    public:
        explicit Lease(ContextPool &cp) : cp_(cp), nested_(t_held == &cp), outer_(t_held) {
            if (!nested_) {
                cp_.mu_.lock();
                t_held = &cp_;
            }
            try {
                if (!nested_) cp_.ensure_size();
            } catch (...) {
                release();
                throw;
            }
            if (!nested_) cp_.pool_->set_held(true);
        }
        ~Lease() {
            if (!nested_) {
                cp_.pool_->set_held(false);
                release();
            }
        }
        Lease(const Lease &) = delete;
        Lease &operator=(const Lease &) = delete;
        ThreadPool &pool() const { return *cp_.pool_; }

    private:
        void release() {
            t_held = outer_;
            cp_.mu_.unlock();
        }
        ContextPool &cp_;
        const bool nested_;
        const ContextPool *const outer_; // the pool this thread held before (another context's), if any
    };

    explicit ContextPool(const std::atomic<int32_t> &n_threads) : n_threads_(n_threads) {}

    // The thread count the pool has (or will have at the next lease), for sizing work.
    static int threads_for(int32_t requested) {
        int want = requested > 0 ? requested : (int)std::thread::hardware_concurrency();
        return want < 1 ? 1 : want;
    }

private:
    void ensure_size() {
        const int want = threads_for(n_threads_.load(std::memory_order_relaxed));
        if (pool_ && requested_ == want) return;
        pool_.reset(); // the old workers stop before the new ones start
        requested_ = -1;
        pool_.reset(new ThreadPool(want));
        requested_ = want;
    }

    static inline thread_local const ContextPool *t_held = nullptr;
    const std::atomic<int32_t> &n_threads_;
    std::mutex mu_;
    std::unique_ptr<ThreadPool> pool_;
    int requested_ = -1;
};

// The cpu backend's pool of ctx (its backend_state, made by the backend's context_init).
inline ContextPool &context_pool(const spec_context *ctx) { return *(ContextPool *)ctx->backend_state; }

} // namespace specula::cpu
