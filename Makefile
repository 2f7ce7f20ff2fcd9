# spikesim Makefile. `make run` and `make test` are all a fresh Debian machine needs: both
# depend on `deps`, which installs (apt-get, only what is missing) every package we use.
#
#   make            build build/spikesim
#   make test       build and run the cmocka suite (one binary per module), the headless
#                   Chromium check of the compare report (tests/html_check.sh) and the check
#                   of make bench's summary on fixed reports (tests/bench_check.sh)
#   make deps-test  install the test-only packages (chromium) when missing; `make test` does
#   make run        run the quickstart config (configs/quickstart.yaml)
#   make asan       the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make valgrind   valgrind memcheck (zero errors, zero definite/indirect leaks) of a small
#                   simulation, training, resume and inspection on the OMP=0 build
#   make tsan       the whole suite under ThreadSanitizer on the OMP=0 build
#   make OMP=0 test build and test without OpenMP
#   make isa-test   the default build (AVX-512 clones), an AVX2-only build and the portable
#                   build (-DSNN_NO_CLONES) give byte-identical results (tests/isa_test.sh),
#                   and the kernels' tests pass in the other two builds
#   make MPI=1      build build-mpi/spikesim with mpicc (data-parallel training and distributed
#                   compare under mpirun; README "Running on several cores or nodes with MPI");
#                   `make MPI=1 deps` also installs Open MPI. The default build needs no MPI.
#   make mpi-test   build with MPI=1 and check 2-rank training and compare against 1 rank
#                   (tests/mpi_test.sh; mpirun -np 2 --oversubscribe)
#   make bench      speed, memory and synaptic operations of the five bench models against
#                   the PyTorch reference (tests/bench.sh; its timings never part of
#                   `make test`; the raw reports kept in runs/bench-DATE-TIME,
#                   docs/benchmarking.md)
#   make fuzz       build the libFuzzer targets of tests/fuzz with clang (build-fuzz/fuzz/)
#   make fuzz-smoke run each fuzz target for 20 s from its committed corpus (docs/fuzzing.md)
#   make fuzz-run FUZZ_SECONDS=1800   the same, as long as you like
#   make V=1        show full compiler command lines
#
# No -ffast-math and no FP contraction: results must be reproducible bit for bit across thread
# counts and match the PyTorch reference spike for spike. -fno-math-errno changes no result (no
# code reads errno after a math function): it lets gcc vectorise sqrt, exactly rounded in every
# vector width (AdamW's update, sim/optim.c).

OPT     ?= -O2 -g
OMP     ?= 1
MPI     ?= 0
ifeq ($(MPI),1)
  CC     = mpicc
  BUILD ?= build-mpi
else
  CC     = gcc
endif
WERROR  ?= 1
SAN     ?=
BUILD   ?= build
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
V       ?= 0
ifeq ($(V),1)
  Q :=
else
  Q := @
endif

DEB_PKGS := gcc make pkg-config libyaml-dev libhdf5-dev hdf5-tools libcmocka-dev \
            libopenblas-dev libxsmm-dev libfftw3-dev zlib1g-dev dataset-fashion-mnist
ifeq ($(MPI),1)
  DEB_PKGS += libopenmpi-dev openmpi-bin
endif
# Test-only: tests/html_check.sh opens the compare report in headless Chromium.
DEB_TEST_PKGS := chromium
# Fuzzing only (`make fuzz`): clang with libFuzzer and the sanitizer runtimes, which Debian
# ships in libclang-rt-14-dev (only recommended by clang, so not installed with
# --no-install-recommends).
DEB_FUZZ_PKGS := clang-14 libclang-rt-14-dev
FUZZ_CC  := clang-14
FUZZ_BUILD := build-fuzz
FUZZ_TARGETS := config idx checkpoint
FUZZ_SECONDS ?= 20
# `make valgrind` only.
DEB_VALGRIND_PKGS := valgrind
PKGS     := hdf5-serial yaml-0.1 zlib openblas cmocka fftw3 libxsmm

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -MMD -MP -I. \
          -ffp-contract=off -fno-trapping-math -fno-math-errno -fno-strict-aliasing \
          -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wpointer-arith -Wvla -Wformat=2 -Werror=implicit-function-declaration
LDFLAGS :=
LDLIBS   = $(PKG_LIBS) -lhdf5_hl -lm

ifeq ($(WERROR),1)
  CFLAGS += -Werror
endif
ifeq ($(MPI),1)
  CFLAGS  += -DSNN_MPI
endif
ifeq ($(OMP),1)
  CFLAGS  += -fopenmp
  LDFLAGS += -fopenmp
else
  CFLAGS  += -Wno-unknown-pragmas
endif
ifneq ($(SAN),)
  CFLAGS  += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS += -fsanitize=$(SAN)
endif

LIB_SRC  := $(sort $(filter-out sim/main.c,$(wildcard sim/*.c neurons/*.c attention/*.c datasets/*.c)))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIB := $(BUILD)/tests/testutil.o $(BUILD)/libspikesim.a

all: $(BUILD)/spikesim

$(BUILD)/spikesim: $(BUILD)/sim/main.o $(BUILD)/libspikesim.a
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/libspikesim.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CC    $<"
	$(Q)$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_LIB)
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# Installs, with apt-get and only when missing, every Debian package the project needs
# (deps-fuzz: the fuzzing toolchain; deps-valgrind: valgrind).
deps deps-fuzz deps-valgrind: PKG_LIST = $(if $(filter deps-fuzz,$@),$(DEB_FUZZ_PKGS),\
  $(if $(filter deps-valgrind,$@),$(DEB_VALGRIND_PKGS),$(DEB_PKGS)))
deps deps-fuzz deps-valgrind:
	@missing=""; for p in $(PKG_LIST); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make $@: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Installs the test-only packages when missing. A failed install is not fatal: the browser
# check then reports itself skipped.
deps-test:
	@missing=""; for p in $(DEB_TEST_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps-test: installing$$missing"; \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; } || \
	  echo "make deps-test: could not install$$missing; tests/html_check.sh will be skipped"; \
	fi

build-only: $(BUILD)/spikesim $(TESTS)

test: deps deps-test
	@$(MAKE) --no-print-directory build-only
	@tests/run_tests.sh $(BUILD)
	@tests/html_check.sh $(BUILD)
	@tests/bench_check.sh

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/spikesim
	$(BUILD)/spikesim run configs/quickstart.yaml

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/spikesim
	@tests/bench.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=address,undefined OPT="-O1 -g" build-only
	@ASAN_OPTIONS=detect_leaks=1 tests/run_tests.sh build-asan

valgrind: deps deps-valgrind
	@$(MAKE) --no-print-directory BUILD=build-noomp OMP=0 build-noomp/spikesim
	@tests/valgrind.sh build-noomp

# ThreadSanitizer runs on the OMP=0 build: libgomp is not instrumented, so TSan would report
# every OpenMP barrier as a race. That build has no threads of its own (OpenBLAS is pinned to
# one), so this proves little today; it is there so that any thread added later is checked.
# SNN_NO_CLONES (sim/vec.h): the target_clones resolvers run while the dynamic loader relocates,
# before the TSan runtime exists, and crash when instrumented. WERROR=0: gcc's
# -Wformat-truncation guesses differ under -fsanitize=thread; the normal build keeps -Werror.
tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan OMP=0 SAN=thread OPT="-O1 -g -DSNN_NO_CLONES" WERROR=0 build-only
	@TSAN_OPTIONS=halt_on_error=1 tests/run_tests.sh build-tsan

noomp: deps
	@$(MAKE) --no-print-directory BUILD=build-noomp OMP=0 build-only
	@tests/run_tests.sh build-noomp

# The default build (AVX-512 clones on a CPU that has it), an AVX2-only build and the portable
# build (no target clones, no run-time AVX2 dispatch): the same runs must give byte-identical
# results (tests/isa_test.sh), and the kernels' own tests (attention, layers: exact comparisons
# with references, fast paths against generic ones) pass in the other two builds too, on a
# machine whose default build runs only its AVX-512 variants.
ISA_TESTS := test_attention test_attention_grad test_layers
isa-test: deps
	@$(MAKE) --no-print-directory $(BUILD)/spikesim
	@$(MAKE) --no-print-directory BUILD=build-avx2 OPT="-O2 -g -DSNN_NO_AVX512_CLONES" \
	  build-avx2/spikesim $(ISA_TESTS:%=build-avx2/tests/%)
	@$(MAKE) --no-print-directory BUILD=build-portable OPT="-O2 -g -DSNN_NO_CLONES" \
	  build-portable/spikesim $(ISA_TESTS:%=build-portable/tests/%)
	@for b in build-avx2 build-portable; do for t in $(ISA_TESTS); do \
	  $$b/tests/$$t >$$b/tests/$$t.log 2>&1 || { cat $$b/tests/$$t.log; echo "isa-test: $$b/tests/$$t failed"; exit 1; }; \
	  echo "isa-test: $$b/tests/$$t passed"; done; done
	@tests/isa_test.sh $(BUILD) build-avx2 build-portable

# The cmocka suite needs no MPI; this checks what only an MPI job can (tests/mpi_test.sh).
mpi-test:
	@$(MAKE) --no-print-directory MPI=1 deps
	@$(MAKE) --no-print-directory MPI=1 BUILD=build-mpi build-mpi/spikesim
	@tests/mpi_test.sh build-mpi

# libFuzzer targets (tests/fuzz, docs/fuzzing.md): the library built by clang with ASan, UBSan
# and coverage instrumentation, without OpenMP (clang's libomp is not a dependency).
fuzz: deps deps-fuzz
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OMP=0 OPT="-O1 -g" \
	  SAN=fuzzer-no-link,address,undefined fuzz-build

fuzz-build: $(FUZZ_TARGETS:%=$(BUILD)/fuzz/fuzz_%)

$(BUILD)/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/fuzz_common.o $(BUILD)/libspikesim.a
	@mkdir -p $(@D)
	@echo "  LD    $@"
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

$(BUILD)/tests/fuzz/fuzz_checkpoint.o: CFLAGS += -DFUZZ_CHECKPOINT_CONFIG='"$(CURDIR)/tests/fuzz/checkpoint.yaml"'

# Each target for FUZZ_SECONDS from a copy of its committed corpus; fails on any crash, leak,
# timeout or sanitizer report.
fuzz-smoke fuzz-run: fuzz
	@tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

clean:
	rm -rf build build-asan build-noomp build-tsan build-mpi build-fuzz build-portable build-avx2

.PHONY: all deps deps-test deps-fuzz deps-valgrind build-only test run bench asan valgrind tsan \
        noomp isa-test mpi-test fuzz fuzz-build fuzz-smoke fuzz-run clean
.SECONDARY:
.DELETE_ON_ERROR:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
