# Two commands on a fresh Debian 12 machine:
#   make run   install dependencies, build, run the embedded demo
#   make test  install dependencies, build, run every test (etcd ones included)
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
# Every configure here turns warnings into errors (KVSTORE_WERROR, off in a plain cmake configure
# so that packagers' compilers cannot break the build).
WERROR = -DKVSTORE_WERROR=ON

.PHONY: all deps configure build run test soak test-asan test-tsan test-release clean format fuzz deb \
  thread-safety \
  sim sim-planted

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(WERROR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/tools/kvstorectl/kvstorectl demo

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# The deterministic simulation (issue 26, tests/sim): SyncStore writers and WatchStore readers
# over the in-memory backend, on a FakeClock and one thread, faults from the seed.
#   make sim SEEDS=N   N seeds (from SIM_BASE, 1) on both cores; last line
#                      `seeds=N failures=F seeds_per_min=R`, exit 1 on a failure
#   make sim SEED=S    replays seed S: its options, faults and `seed=S hash=H`
#   make sim-planted   a build with the planted bugs (build-sim-planted): each must be caught
#                      within SIM_PLANTED_SEEDS seeds
SEEDS ?= 1000
SIM_BASE ?= 1
SIM_PLANTED_SEEDS ?= 2000
sim: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target kvstore_sim
	@scripts/sim.sh $(if $(SEED),seed $(SEED),seeds $(SEEDS)) $(BUILD_DIR)/tests/sim/kvstore_sim $(SIM_BASE)

sim-planted: deps
	@cmake -S . -B build-sim-planted -G Ninja $(WERROR) -DKVSTORE_SIM_PLANTED_BUGS=ON \
	  -DKVSTORE_BUILD_SHARED=OFF >/dev/null
	@cmake --build build-sim-planted -j $(JOBS) --target kvstore_sim
	@scripts/sim.sh planted $(SIM_PLANTED_SEEDS) build-sim-planted/tests/sim/kvstore_sim

# The long variants of tests that `make test` runs short (issue 23): watches and the session lease
# through 60 s of expiring tokens (simple and JWT), 50 collaborators with etcd down for 60 s,
# 10,000 backends created, used with a watch and destroyed (LIFECYCLE_CYCLES), 1,000 writes/s
# for 60 s after each of two certificate rotations, and a herd of HERD_AGENTS kvstorectl agents
# through a kill -9 and restart of their etcd.
# Their [figure] lines (CPU while etcd is down, convergence times, descriptors, threads and RSS
# over the cycles, etcd's peak request rates under the herd) are in the output.
SOAK_SECONDS ?= 60
LIFECYCLE_CYCLES ?= 10000
HERD_AGENTS ?= 200
soak: build
	cd $(BUILD_DIR) && KVSTORE_AUTH_SOAK_SECONDS=$(SOAK_SECONDS) KVSTORE_DOWN_SECONDS=$(SOAK_SECONDS) \
	  KVSTORE_LIFECYCLE_CYCLES=$(LIFECYCLE_CYCLES) KVSTORE_CERT_ROTATION_SECONDS=$(SOAK_SECONDS) \
	  KVSTORE_HERD_AGENTS=$(HERD_AGENTS) ctest --output-on-failure -V --timeout 900 \
	  -R '^(etcd_auth_streams_test|etcd_down_load_test|lifecycle_cycles_test|etcd_cert_rotation_test|kvstorectl_agent_herd_test)$$'

# Sanitizer builds live in their own directories and build only the test binaries ctest runs
# (target all_tests, or unit_tests with UNIT_ONLY=1, which also skips the tests that start etcd).
# Timeouts are tripled under sanitizers (cmake/KvstoreTargets.cmake).
# Debian's gRPC, abseil, OpenSSL and spdlog are not built with TSan, so TSan cannot see their
# synchronisation: tests/tsan.supp suppresses the races reported inside them. With it, every unit
# binary (the gRPC-using etcd_unit_test and kvstorectl_bench_test included) passed 5 repeated TSan
# runs, so none is excluded. TSAN_CTEST_EXCLUDE (a ctest label regex, e.g. grpc) would leave
# labelled tests out of the TSan unit run (UNIT_ONLY=1) should that change.
# The package test (label package) is not defined in sanitized builds (tests/package).
# LeakSanitizer reads tests/lsan.supp: a leak inside Debian's c-ares 1.18.1 (fixed upstream),
# reached through gRPC's resolver; the file says why it is not ours.
#
# SAN_ETCD=1 (with UNIT_ONLY=1, as CI runs it) adds etcd suites after the unit tests: those named
# in ASAN_ETCD_TESTS under ASan+UBSan, in TSAN_ETCD_TESTS under TSan. Only their binaries are
# built besides unit_tests. The ASan list reaches every part of the etcd client (unary calls,
# watches, leases, TLS, auth and expiring tokens, clusters and failover, batches, metrics, close
# with etcd gone, kvstorectl agent/mesh as processes). The TSan list is its core (calls, watches,
# leases, batches) plus auth with token streams, a TLS cluster, close with etcd gone and
# kvstorectl as a process (etcd_auth_streams_test, etcd_tls_cluster_test,
# lifecycle_unreachable_test, kvstorectl_health_test), not all fourteen because time forces it:
# CI ran 3,934 s (limit 3,600 s) with all fourteen under both sanitizers and without a compiler
# cache, and the TSan build and run cost the most. Measured on the 2-core machine (loaded by
# other builds), TSan, ctest -j2: the eight ran in 78 s (the first four alone about 25 s of it:
# 7.6, 7.5, 13.6 and 18.8 s; the added four 57.6, 26.4, 6.8 and 12.8 s), and the added four
# cost about 85 s of compiling without a cache (their sources and kvstore_running_tool): some
# 2 to 2.5 minutes more for CI. `make test-tsan UNIT_ONLY=1 SAN_ETCD=1
# TSAN_ETCD_TESTS="$(ASAN_ETCD_TESTS)"` runs the long list under TSan.
# Left to the full runs (`make test-asan` / `make test-tsan` without UNIT_ONLY), for time only
# unless said otherwise: load_collaborators_test (20,000 keys: 285 s under TSan),
# fault_single_member_test (91 s under TSan) and kvstorectl_agent_mesh_test (42 s;
# fault_cluster_test and kvstorectl_mesh_clusters_test cover their paths), kvstorectl_cilium_test,
# kvstorectl_agent_auth_lifecycle_test, kvstorectl_agent_herd_test and security_logs_test (each
# passed without a report under both sanitizers; ASan+UBSan times 195, 44, 25, 7, 7, 12 and 9 s
# in the order named), lifecycle_cycles_test (open: passed under TSan in 23 s; under ASan its
# plain cycles stalled at cycle 253 with no initial list, its TLS cycles grew RSS by 200 MB, which
# ASan's quarantine of freed memory may explain, and LeakSanitizer reported 16 KB allocated
# inside libcrypto whose callers the fast unwinder does not show), etcd_cert_rotation_test (open:
# under TSan, 2 of 7 runs stopped on a report of the poller deleting a gRPC ClientContext that
# the writing thread had read, the read's stack not restorable; and in 2 others, with no report,
# calls made while the new certificate stood beside the old key hung to their 30 s deadline
# instead of going on with the old pair), and the two that measure time or CPU,
# which a sanitizer's slowdown can break without any report: etcd_down_load_test (its bound of
# 25% of a core while etcd is down: 70-80% once under TSan; passed here under TSan, 33 s, and
# ASan, 26 s) and etcd_freeze_member_test (a 5 s lease TTL, which expired once under ASan on a
# loaded machine; passed here under TSan, 62 s, and ASan, 56 s). An etcd suite not listed (a new
# one too) runs only in the full runs.
ASAN_ETCD_TESTS ?= etcd_basic_test etcd_watch_test etcd_lease_test etcd_tls_cluster_test \
  etcd_security_test etcd_auth_streams_test etcd_cluster_test fault_cluster_test \
  etcd_conformance_test etcd_batch_test etcd_metrics_test lifecycle_unreachable_test \
  kvstorectl_health_test kvstorectl_mesh_clusters_test
TSAN_ETCD_TESTS ?= etcd_basic_test etcd_watch_test etcd_lease_test etcd_batch_test \
  etcd_auth_streams_test etcd_tls_cluster_test lifecycle_unreachable_test kvstorectl_health_test
SAN_ETCD_ON = $(and $(UNIT_ONLY),$(SAN_ETCD))
empty :=
space := $(empty) $(empty)
# $(call san_targets,SUITES) and $(call san_etcd_ctest,SUITES): what a sanitizer build builds, and
# the ctest run of SUITES that follows its unit tests when SAN_ETCD is on.
san_targets = $(if $(UNIT_ONLY),unit_tests $(if $(SAN_ETCD_ON),$(1)),all_tests)
san_etcd_ctest = $(if $(SAN_ETCD_ON),&& ctest --output-on-failure -j $(JOBS) -L etcd -R '^($(subst $(space),|,$(strip $(1))))$$',)
UNIT_CTEST_ARGS = $(if $(UNIT_ONLY),-LE etcd,)
TSAN_CTEST_EXCLUDE ?=
TSAN_CTEST_ARGS = $(if $(UNIT_ONLY),-LE '$(if $(TSAN_CTEST_EXCLUDE),^(etcd|$(TSAN_CTEST_EXCLUDE))$$,etcd)',)

test-asan: deps
	@cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug $(WERROR) \
	  -DKVSTORE_SANITIZE=address,undefined >/dev/null
	@cmake --build build-asan -j $(JOBS) --target $(call san_targets,$(ASAN_ETCD_TESTS))
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  sh -c "ctest --output-on-failure -j $(JOBS) $(UNIT_CTEST_ARGS) $(call san_etcd_ctest,$(ASAN_ETCD_TESTS))"

test-tsan: deps
	@cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(WERROR) \
	  -DKVSTORE_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j $(JOBS) --target $(call san_targets,$(TSAN_ETCD_TESTS))
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
	  sh -c "ctest --output-on-failure -j $(JOBS) $(TSAN_CTEST_ARGS) $(call san_etcd_ctest,$(TSAN_ETCD_TESTS))"

# The Release build packagers make (-O3, which warns where RelWithDebInfo's -O2 does not), in
# build-release, warnings as errors: the whole tree, or with UNIT_ONLY=1 the library, kvstorectl
# and the unit tests; then its tests (UNIT_ONLY=1: all but the etcd ones, the package tests
# included). CI builds Release through `make test CMAKE_FLAGS=-DCMAKE_BUILD_TYPE=Release`.
test-release: deps
	@cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release $(WERROR) >/dev/null
	@cmake --build build-release -j $(JOBS) $(if $(UNIT_ONLY),--target unit_tests installable)
	cd build-release && ctest --output-on-failure -j $(JOBS) $(UNIT_CTEST_ARGS)

# libFuzzer targets (clang), built in build-fuzz. Each runs FUZZ_SECONDS on a scratch copy of its
# seed corpus fuzz/corpus/<name>/ (the committed corpus never grows); a crash stops the run and
# leaves the reproducer in build-fuzz/artifacts/. FUZZERS="a b" builds and runs only those.
FUZZ_SECONDS ?= 60
FUZZERS ?= watch_store_fuzzer shared_store_fuzzer workqueue_fuzzer etcd_config_fuzzer \
  cilium_values_fuzzer
fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DKVSTORE_FUZZ=ON -DKVSTORE_BUILD_TESTS=OFF -DKVSTORE_SANITIZE=address,undefined \
	  $(WERROR) >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target $(FUZZERS)
	@mkdir -p build-fuzz/artifacts
	@set -e; for f in $(FUZZERS); do \
	  rm -rf build-fuzz/corpus/$$f; mkdir -p build-fuzz/corpus/$$f; \
	  cp fuzz/corpus/$$f/* build-fuzz/corpus/$$f/; \
	  echo "fuzz: $$f for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    build-fuzz/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -timeout=120 -print_final_stats=1 \
	    -artifact_prefix=build-fuzz/artifacts/$$f- build-fuzz/corpus/$$f; \
	done

# The Debian packages libkvstore0, libkvstore-dev and kvstorectl (cmake/KvstorePackaging.cmake)
# in $(BUILD_DIR)/packages: the build is configured for /usr (libraries in the multiarch
# directory), the library and the tool built, and CPack packs them (dependencies computed by
# dpkg-shlibdeps).
deb: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(WERROR) -DCMAKE_INSTALL_PREFIX=/usr $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target kvstorectl kvstore_shared
	rm -f $(BUILD_DIR)/packages/*.deb
	cd $(BUILD_DIR) && cpack -G DEB -B packages
	@ls -l $(BUILD_DIR)/packages/*.deb

# Clang's thread-safety analysis (-Wthread-safety, as errors) over the library and kvstorectl:
# every ABSL_GUARDED_BY field used under its lock, every ABSL_EXCLUSIVE_LOCKS_REQUIRED function
# called with it. A clang configure in build-tsa whose translation units (from its
# compile_commands.json) are only parsed and analysed (-fsyntax-only), TSA_JOBS at a time; only
# the etcd protocol headers are generated, nothing is compiled. See scripts/thread-safety.py.
TSA_JOBS ?= 2
thread-safety: deps
	@cmake -S . -B build-tsa -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
	  -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
	@ninja -C build-tsa -t commands src/backend/etcd/proto/rpc.pb.h src/backend/etcd/proto/kv.pb.h \
	  | grep -F protoc | sh
	@scripts/thread-safety.py build-tsa $(TSA_JOBS)

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan build-release build-tsa
