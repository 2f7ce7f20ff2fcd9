# spikesim Makefile. `make run` and `make test` are all a fresh Debian machine needs: both
# depend on `deps`, which installs (apt-get, only what is missing) every package we use.
#
#   make            build build/spikesim
#   make test       build and run the cmocka suite (one binary per module) and the headless
#                   Chromium check of the compare report (tests/html_check.sh)
#   make deps-test  install the test-only packages (chromium) when missing; `make test` does
#   make run        run the quickstart config (configs/quickstart.yaml)
#   make asan       the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make valgrind   valgrind memcheck (zero errors, zero definite/indirect leaks) of a small
#                   simulation, training, resume and inspection on the OMP=0 build
#   make tsan       the whole suite under ThreadSanitizer on the OMP=0 build
#   make OMP=0 test build and test without OpenMP
#   make bench      speed, memory and synaptic operations of the five bench models against
#                   the PyTorch reference (tests/bench.sh; never part of `make test`)
#   make V=1        show full compiler command lines
#
# No -ffast-math and no FP contraction: results must be reproducible bit for bit across thread
# counts and match the PyTorch reference spike for spike.

CC       = gcc
OPT     ?= -O2 -g
OMP     ?= 1
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
            libopenblas-dev libfftw3-dev zlib1g-dev dataset-fashion-mnist
# Test-only: tests/html_check.sh opens the compare report in headless Chromium.
DEB_TEST_PKGS := chromium
# make valgrind only.
DEB_VALGRIND_PKGS := valgrind
PKGS     := hdf5-serial yaml-0.1 zlib openblas cmocka fftw3

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE $(OPT) -MMD -MP -I. \
          -ffp-contract=off -fno-strict-aliasing \
          -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
          -Wpointer-arith -Wvla -Wformat=2 -Werror=implicit-function-declaration
LDFLAGS :=
LDLIBS   = $(PKG_LIBS) -lhdf5_hl -lm

ifeq ($(WERROR),1)
  CFLAGS += -Werror
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

# Installs, with apt-get and only when missing, every Debian package the project needs.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
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

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/spikesim
	$(BUILD)/spikesim run configs/quickstart.yaml

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/spikesim
	@tests/bench.sh $(BUILD)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=address,undefined OPT="-O1 -g" build-only
	@ASAN_OPTIONS=detect_leaks=1 tests/run_tests.sh build-asan

valgrind: deps
	@dpkg-query -W -f='$${Status}' $(DEB_VALGRIND_PKGS) 2>/dev/null | grep -q 'install ok installed' || \
	  { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEB_VALGRIND_PKGS); }
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

clean:
	rm -rf build build-asan build-noomp build-tsan

.PHONY: all deps deps-test build-only test run bench asan valgrind tsan noomp clean
.SECONDARY:
.DELETE_ON_ERROR:

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
