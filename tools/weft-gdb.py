# weft-gdb.py - gdb support for weft fibers (live processes and core files).
#
# Load it with
#     (gdb) source /path/to/weft-gdb.py
# (installed as share/weft/weft-gdb.py), then:
#     info weft-fibers            list every fiber of every running runtime
#     weft fibers                 the same
#     weft bt ID|all [BT-ARGS]    backtrace of fiber ID (or of every fiber);
#                                 BT-ARGS go to `backtrace` (full, -full, N...)
#     weft fiber ID               look at fiber ID with the ordinary commands
#                                 (bt, frame N, up, info locals, print) until
#                                 `weft fiber off` or the program resumes
# See docs/debugging.md.
#
# How a parked fiber is unwound. A suspended fiber's control block holds
# `ctx`, the stack pointer Boost.Context's jump/ontop_fcontext left behind
# after pushing the callee-saved registers. On x86-64 System V:
#     ctx+0x00 mxcsr, x87 control word    ctx+0x28 rbx
#     ctx+0x08 r12                        ctx+0x30 rbp
#     ctx+0x10 r13                        ctx+0x38 return address (rip)
#     ctx+0x18 r14                        ctx+0x40 rsp once resumed
#     ctx+0x20 r15
# On arm64 (AAPCS64):
#     ctx+0x00 d8 ... ctx+0x38 d15        ctx+0x90 x29 (fp)
#     ctx+0x40 x19 ... ctx+0x88 x28       ctx+0x98 x30 (lr)
#     ctx+0xa0 pc to resume at            ctx+0xb0 sp once resumed
# Writing those into the thread's registers would work on a live process
# but gdb refuses register writes on a core file ("You can't do that without
# a process to debug"), and changing a live inferior from a debugging
# helper is a hazard if anything goes wrong before the restore. Instead a
# Python frame unwinder, enabled only while one of these commands runs (or
# while `weft fiber` is in effect), claims the selected thread's innermost
# frame and reports the fiber's saved registers as its caller's. gdb's own
# DWARF unwinder then walks the fiber's stack from there, exactly as for
# any thread, on a live process and on a core alike, and the inferior is
# never written. A frame filter hides that borrowed innermost frame and
# stops the listing at the fiber's entry function (weft__fiber_entry);
# below it is only the fcontext trampoline.

import gdb
from gdb.unwinder import Unwinder, register_unwinder


class _Layout(object):
    """One ABI's saved context: the registers as (name, offset from ctx),
    where the resume pc is, what sp becomes, and which saved word of a
    fresh context (make_fcontext's frame) points into make_fcontext."""

    def __init__(self, saved, pc, pc_off, sp, sp_off, fresh_off):
        self.saved, self.pc, self.pc_off = saved, pc, pc_off
        self.sp, self.sp_off, self.fresh_off = sp, sp_off, fresh_off


# gdb's architecture names. x86-64's fresh frame returns into the
# trampoline inside make_fcontext; arm64's resumes at the entry function
# itself with lr at make_fcontext's `finish` stub.
_LAYOUTS = {
    "i386:x86-64": _Layout(
        saved=(("r12", 0x08), ("r13", 0x10), ("r14", 0x18), ("r15", 0x20),
               ("rbx", 0x28), ("rbp", 0x30), ("rip", 0x38)),
        pc="rip", pc_off=0x38, sp="rsp", sp_off=0x40, fresh_off=0x38),
    "aarch64": _Layout(
        saved=tuple(("x%d" % r, 0x40 + 8 * (r - 19)) for r in range(19, 31)) +
              (("pc", 0xa0),),
        pc="pc", pc_off=0xa0, sp="sp", sp_off=0xb0, fresh_off=0x98),
}


def _layout():
    return _LAYOUTS.get(gdb.selected_inferior().architecture().name())

# gdb shows a symbol without debug info the Ada way ("weft.fiber_entry").
_FIBER_ENTRY = ("weft__fiber_entry", "weft.fiber_entry")
_FOREVER = -1  # WEFT_FOREVER


class WeftError(gdb.GdbError):
    pass


# ------------------------------------------------------------- type access
#
# Types and enum names come from the program's own debug information, so
# the extension follows the runtime's structures as they change; only the
# fcontext layout above is fixed (it is an ABI, not a weft structure).

def _type(name):
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        raise WeftError("weft: type '%s' not found: is the program linked with "
                        "weft built with debug info (-g)?" % name)


# The enums as src/internal.h and src/stack.h have them, for a library built
# without debug info whose types come from elsewhere (the test program's).
_ENUM_FALLBACK = {
    "enum weft__fstate": ["free", "runnable", "running", "parked", "exiting",
                          "done", "sched"],
    "enum weft__wait_kind": ["none", "sleep", "join", "fd", "chan", "select", "mutex",
                             "cond", "sem", "wg", "offload", "signal", "shutdown"],
    "enum weft__fflag": {1: "detached", 2: "cancelled", 4: "main", 8: "pinned",
                         16: "voidfn"},
    "enum weft__guard_kind": {1: "madvise", 2: "mprotect", 3: "canary"},
}


def _enum_names(enum_name, prefix):
    """{value: short lower-case name} of an enum of the runtime."""
    try:
        t = gdb.lookup_type(enum_name)
    except gdb.error:
        fb = _ENUM_FALLBACK[enum_name]
        return dict(enumerate(fb)) if isinstance(fb, list) else dict(fb)
    names = {}
    for f in t.fields():
        n = f.name
        if n.startswith(prefix):
            n = n[len(prefix):]
        names[f.enumval] = n.lower()
    return names


def _enum_value(enum_name, prefix, short):
    return next(v for v, n in _enum_names(enum_name, prefix).items() if n == short)


def _u64(v):
    return int(v.cast(gdb.lookup_type("unsigned long long")))


def _read_u64(inf, addr):
    return int.from_bytes(inf.read_memory(addr, 8).tobytes(), "little")


def _registry():
    """The running runtimes, newest first (runtime.c's weft__registry)."""
    try:
        # The cast also serves a library built without -g, where the symbol
        # is there but its type is not ("has unknown type").
        head = gdb.parse_and_eval("*(struct weft__rt **)&weft__registry")
    except gdb.error:
        raise WeftError("weft: no symbol weft__registry: is this a weft program "
                        "(with symbols), and has its library been loaded yet?")
    rts = []
    rt = head
    while _u64(rt) != 0 and len(rts) < 4096:
        rts.append(rt)
        rt = rt.dereference()["reg_next"]
    return rts


class Fiber(object):
    """One control block, with what the commands need decoded."""

    def __init__(self, rt, worker, v):
        self.rt = rt
        self.worker = worker
        self.v = v                      # gdb.Value of struct weft__fiber
        self.addr = _u64(v.address)
        self.id = int(v["id"])
        self.name = v["name"].string(errors="replace")
        self.state = int(v["state"])
        self.flags = int(v["flags"])
        self.ctx = _u64(v["ctx"])

    @property
    def running(self):
        return _u64(self.worker["current"]) == self.addr

    def label(self):
        return "fiber %d \"%s\"" % (self.id, self.name)


def _fibers():
    """Every control block that is not free, runtime by runtime.

    The table is read a block (WEFT__FT_BLOCK control blocks) at a time in
    one memory read, and only the state byte of each is looked at: building
    a gdb.Value per free slot would take seconds for a big table."""
    fiber_t = _type("struct weft__fiber")
    size = fiber_t.sizeof
    state_off = next(f.bitpos // 8 for f in fiber_t.fields() if f.name == "state")
    free_state = _enum_value("enum weft__fstate", "WEFT__F_", "free")
    per_block = _ft_block()
    inf = gdb.selected_inferior()
    out = []
    for rt in _registry():
        r = rt.dereference()
        w = r["w0"]
        ft = r["ft"]
        blocks = ft["blocks"]
        for b in range(int(ft["nblocks"])):
            base = _u64(blocks[b])
            mem = inf.read_memory(base, per_block * size).tobytes()
            for i in range(per_block):
                if mem[i * size + state_off] != free_state:
                    v = gdb.Value(base + i * size).cast(fiber_t.pointer()).dereference()
                    out.append(Fiber(rt, w, v))
    return out


def _ft_block():
    # The macro is in the debug info only with -g3; it is 1024 otherwise.
    try:
        return int(gdb.parse_and_eval("(unsigned)WEFT__FT_BLOCK"))
    except gdb.error:
        return 1024


def _find(arg):
    """The fiber named by a command argument: an id, or a control block address."""
    try:
        want = int(gdb.parse_and_eval(arg))
    except gdb.error:
        raise WeftError("weft: '%s' is not a fiber id" % arg)
    for f in _fibers():
        if f.id == want or f.addr == want:
            return f
    raise WeftError("weft: no live fiber %s (see `info weft-fibers`)" % arg)


# ------------------------------------------------------------- the listing

def _wait_text(f, now):
    waits = _enum_names("enum weft__wait_kind", "WEFT__W_")
    wait = f.v["wait"]
    kind = int(wait["kind"])
    obj = _u64(wait["obj"])
    text = waits.get(kind, "kind %d" % kind)
    if text == "fd":
        d = int(wait["detail"])
        dirs = [n for bit, n in ((1, "read"), (2, "write")) if d & bit]
        text = "fd %d (%s)" % (_signed(obj), "+".join(dirs) or "?")
    elif text == "join" and obj:
        o = gdb.Value(obj).cast(_type("struct weft__fiber").pointer()).dereference()
        text = "join of fiber %d \"%s\"" % (int(o["id"]), o["name"].string(errors="replace"))
    elif obj:
        # A void * prints with the symbol it points into, when it has one.
        text += " " + str(gdb.Value(obj).cast(gdb.lookup_type("void").pointer()))
    deadline = int(wait["deadline"])
    since = int(wait["since"])
    if deadline != _FOREVER:
        text += ", deadline in %.1f ms" % ((deadline - now) / 1e6)
    if since:
        text += ", waited %.1f ms" % ((now - since) / 1e6)
    if wait["uncancellable"]:
        text += ", uncancellable"
    return text


def _signed(u):
    return u - (1 << 64) if u >= 1 << 63 else u


def _stack_text(f):
    st = _u64(f.v["stack"])
    if not st:
        return "-"
    s = f.v["stack"].dereference()
    guards = _enum_names("enum weft__guard_kind", "WEFT__GK_")
    return "%d KiB %s" % (int(s["size"]) // 1024, guards.get(int(s["guard"]), "?"))


def _flags_text(f):
    names = _enum_names("enum weft__fflag", "WEFT__FL_")
    out = [n for bit, n in sorted(names.items()) if f.flags & bit and n != "voidfn"]
    return " [%s]" % ",".join(out) if out else ""


def _list_fibers():
    states = _enum_names("enum weft__fstate", "WEFT__F_")
    fibers = _fibers()
    rts = _registry()
    if not rts:
        print("weft: no runtime is running (weft__registry is empty)")
        return
    for rt in rts:
        r = rt.dereference()
        w = r["w0"]
        now = int(w["now"])
        cur = w["current"]
        if _u64(cur) == _u64(w["sched"].address):
            running = "its scheduler"
        else:
            c = cur.dereference()
            running = "fiber %d \"%s\"" % (int(c["id"]), c["name"].string(errors="replace"))
        mine = [f for f in fibers if _u64(f.rt) == _u64(rt)]
        print("runtime 0x%x: %d fiber(s); worker 0 is running %s; "
              "worker clock %.3f s" % (_u64(rt), len(mine), running, now / 1e9))
        print("  %1s %-5s %-16s %-9s %-17s %s" % ("", "Id", "Name", "State", "Stack", "Waits on"))
        for f in mine:
            st = states.get(f.state, str(f.state))
            waits = _wait_text(f, now) if st == "parked" else "-"
            if st == "runnable" and _not_started(f):
                waits = "(not started yet: %s)" % _fn_text(f)
            flags = _flags_text(f)
            if waits == "-" and flags:
                waits, flags = flags.lstrip(), ""
            print("  %1s %-5d %-16s %-9s %-17s %s%s" % (
                "*" if f.running else "", f.id, '"%s"' % f.name, st,
                _stack_text(f), waits, flags))


class InfoWeftFibers(gdb.Command):
    """List every weft fiber: id, name, state, stack, what it waits on.

The running fiber is marked with '*'. Deadlines and wait times are relative
to the worker's clock as of its last pass through the scheduler (the only
clock a core file has)."""

    def __init__(self):
        super(InfoWeftFibers, self).__init__("info weft-fibers", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        _list_fibers()


# ------------------------------------------------------ unwinding a fiber

class _View(object):
    """Which fiber the unwinder and the frame filter present, if any."""
    fiber_ctx = None       # saved context to unwind from
    thread = None          # ptid of the thread whose innermost frame is borrowed
    trim = False           # frame filter on: hide the borrowed frame, stop at entry
    label = None


class _FrameId(object):
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class WeftUnwinder(Unwinder):
    """Makes the selected thread's innermost frame "return" into a fiber."""

    def __init__(self):
        super(WeftUnwinder, self).__init__("weft-fiber")

    def __call__(self, pending):
        ctx = _View.fiber_ctx
        if ctx is None or pending.level() != 0:
            return None
        th = gdb.selected_thread()
        if th is None or th.ptid != _View.thread:
            return None
        # The borrowed frame's id takes the fiber's ctx as its stack address:
        # that is below every frame of the fiber, so gdb's "previous frame
        # inner to this frame (corrupt stack?)" check, which compares stack
        # addresses across what it believes is one stack, lets the walk go on
        # whichever way the thread's and the fiber's stacks lie.
        lay = _layout()
        if lay is None:
            return None
        pc = pending.read_register(lay.pc)
        sp = pending.read_register(lay.sp)
        info = pending.create_unwind_info(_FrameId(gdb.Value(ctx).cast(sp.type), pc))
        inf = gdb.selected_inferior()
        ulong = gdb.lookup_type("unsigned long")
        for reg, off in lay.saved:
            info.add_saved_register(reg, gdb.Value(_read_u64(inf, ctx + off)).cast(ulong))
        info.add_saved_register(lay.sp, gdb.Value(ctx + lay.sp_off).cast(ulong))
        return info


class WeftFrameFilter(object):
    """While a fiber is viewed: drop the borrowed innermost frame and end the
    listing at weft__fiber_entry (below it is the fcontext trampoline, whose
    unwinding runs off the top of the stack)."""

    def __init__(self):
        self.name = "weft-fiber"
        self.priority = 100
        self.enabled = True

    def filter(self, frames):
        if not _View.trim:
            return frames
        return self._trim(frames)

    @staticmethod
    def _trim(frames):
        skip_first = _View.fiber_ctx is not None
        for i, fd in enumerate(frames):
            if i == 0 and skip_first:
                continue
            yield fd
            # Frame.name() also knows symbols without debug info, where the
            # decorator's function() gives only an address.
            if fd.inferior_frame().name() in _FIBER_ENTRY:
                return


def _set_view(ctx, trim=True, label=None):
    _View.fiber_ctx = ctx
    _View.thread = gdb.selected_thread().ptid if gdb.selected_thread() else None
    _View.trim = trim
    _View.label = label
    gdb.invalidate_cached_frames()


def _clear_view(*_ignored):
    if _View.fiber_ctx is not None or _View.trim:
        _View.fiber_ctx = None
        _View.trim = False
        _View.label = None
        gdb.invalidate_cached_frames()


def _check_arch():
    # The saved-context layouts known are x86-64 System V's and arm64's.
    if _layout() is None:
        raise WeftError("weft: unwinding a parked fiber is implemented for x86-64 "
                        "and aarch64 only (this is %s)"
                        % gdb.selected_inferior().architecture().name())


def _not_started(f):
    """A fiber spawned and never run: its context is make_fcontext's fresh
    frame, whose return address is the fcontext trampoline."""
    lay = _layout()
    if lay is None:
        return False
    try:
        start = _u64(gdb.parse_and_eval("(unsigned long)&weft__make_fcontext"))
        word = _read_u64(gdb.selected_inferior(), f.ctx + lay.fresh_off)
    except gdb.error:
        return False
    # The trampoline (or stub) lies within make_fcontext's few dozen bytes.
    return 0 <= word - start < 0x80


def _fn_text(f):
    voidfn = _enum_value("enum weft__fflag", "WEFT__FL_", "voidfn")
    fn = f.v["vfn"] if f.flags & voidfn else f.v["fn"]
    if not _u64(fn):
        return "no function"
    # "(weft_fn) 0x5555... <name>": keep the name when gdb knows it.
    text = str(fn)
    if "<" in text and text.endswith(">"):
        text = text[text.index("<") + 1:-1]
    return "will call %s" % text


def _thread_on_stack(f):
    """The thread whose stack pointer lies in f's stack (where f is running)."""
    st = _u64(f.v["stack"])
    if not st:
        return None
    s = f.v["stack"].dereference()
    lo = _u64(s["lo"])
    hi = lo + int(s["size"])
    for th in gdb.selected_inferior().threads():
        prev = gdb.selected_thread()
        th.switch()
        try:
            sp = _u64(gdb.parse_and_eval("$sp"))
        finally:
            prev.switch()
        if lo <= sp < hi:
            return th
    return None


def _backtrace(f, bt_args):
    """Print f's backtrace, or why there is none."""
    states = _enum_names("enum weft__fstate", "WEFT__F_")
    st = states.get(f.state, str(f.state))
    head = "%s (%s)" % (f.label(), st)
    if f.running:
        th = _thread_on_stack(f)
        if th is None:
            print("%s: running; its frames are the worker thread's: use `bt` there" % head)
            return
        print("%s: running in thread %d:" % (head, th.num))
        prev = gdb.selected_thread()
        th.switch()
        _set_view(None, trim=True)
        try:
            gdb.execute("backtrace %s" % bt_args)
        finally:
            _clear_view()
            prev.switch()
        return
    if st in ("exiting", "done"):
        print("%s: has returned; no stack left to show" % head)
        return
    if not f.ctx:
        print("%s: no saved context" % head)
        return
    if _not_started(f):
        print("%s: not started yet (%s)" % (head, _fn_text(f)))
        return
    lay = _layout()
    try:
        rip = _read_u64(gdb.selected_inferior(), f.ctx + (lay.pc_off if lay else 0))
    except gdb.MemoryError:
        rip = None
    if not rip:
        # gdb's gcore cannot read a stack mapping holding MADV_GUARD_INSTALL
        # guard pages and writes zeros in its place: say so rather than print
        # a one-frame backtrace of nothing.
        print("%s: its saved context at 0x%x is unreadable or zero; the core "
              "file probably lacks this stack (see docs/debugging.md)" % (head, f.ctx))
        return
    _check_arch()
    print("%s:" % head)
    _set_view(f.ctx, trim=True, label=f.label())
    try:
        gdb.execute("backtrace %s" % bt_args)
    finally:
        _clear_view()


# --------------------------------------------------------------- commands

class WeftPrefix(gdb.Command):
    """weft fiber runtime commands: weft fibers, weft bt, weft fiber."""

    def __init__(self):
        super(WeftPrefix, self).__init__("weft", gdb.COMMAND_USER, prefix=True)


class WeftFibers(gdb.Command):
    """List every weft fiber (same as `info weft-fibers`)."""

    def __init__(self):
        super(WeftFibers, self).__init__("weft fibers", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        _list_fibers()


class WeftBt(gdb.Command):
    """Backtrace of a weft fiber: weft bt ID|all [BACKTRACE-ARGS]

ID is a fiber id from `info weft-fibers` (or a control block's address).
A parked or runnable fiber is unwound from its saved context; the running
fiber's frames are shown from the thread it runs on. Anything after ID is
passed to `backtrace` (e.g. `full`, `-full`, a frame count)."""

    def __init__(self):
        super(WeftBt, self).__init__("weft bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        words = arg.split(None, 1)
        if not words:
            raise WeftError("usage: weft bt ID|all [backtrace args]")
        bt_args = words[1] if len(words) > 1 else ""
        if words[0] == "all":
            for i, f in enumerate(_fibers()):
                if i:
                    print("")
                _backtrace(f, bt_args)
        else:
            _backtrace(_find(words[0]), bt_args)


class WeftFiber(gdb.Command):
    """Look at a weft fiber with gdb's own commands: weft fiber ID|off

After `weft fiber ID`, bt, frame N, up, down, info locals and print show
fiber ID's frames (from frame 1: frame 0 is the thread's real innermost
frame, which the view borrows). `weft fiber off`, or resuming the program,
ends the view. Not needed for the running fiber: its frames are the thread's."""

    def __init__(self):
        super(WeftFiber, self).__init__("weft fiber", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        arg = arg.strip()
        if not arg:
            print("weft: viewing %s" % (_View.label or "no fiber"))
            return
        if arg == "off":
            _clear_view()
            return
        f = _find(arg)
        if f.running:
            raise WeftError("weft: fiber %d is running: its frames are the thread's" % f.id)
        st = _enum_names("enum weft__fstate", "WEFT__F_").get(f.state)
        if st in ("exiting", "done"):
            raise WeftError("weft: fiber %d has returned: no frames left" % f.id)
        if _not_started(f) or not f.ctx:
            raise WeftError("weft: fiber %d has no frames to show yet" % f.id)
        _check_arch()
        _set_view(f.ctx, trim=True, label=f.label())
        older = gdb.newest_frame().older()
        if older is not None:
            older.select()
        print("weft: viewing %s; `weft fiber off` to go back" % f.label())
        gdb.execute("frame")


# ------------------------------------------------------------ registration

register_unwinder(None, WeftUnwinder(), replace=True)
gdb.frame_filters["weft-fiber"] = WeftFrameFilter()
# A view borrows the thread's current frame: it must not outlive it.
for _ev in (gdb.events.cont, gdb.events.exited, gdb.events.new_objfile):
    _ev.connect(_clear_view)
InfoWeftFibers()
WeftPrefix()
WeftFibers()
WeftBt()
WeftFiber()
