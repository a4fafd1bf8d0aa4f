"""The grader's agent inside the learner's kernel: it calls the learner's code on inputs the grader sent, and sends
back only the outputs, as data. It never sees an expected value: the judging happens in the grader's process.

`minigemma grade` sends this file's source as the first cell of every notebook it runs (the kernel does not import
it from minigemma), then calls `serve(request, response)` once per call the check makes:
  request  (written by the grader, torch.save): {"op": "lookup" | "call" | "getattr" | "setattr" | "list", ...}
  response (written here, loadable with torch.load(weights_only=True)): {"ok": value} or {"error": {...}}, and
           "refused": every refusal so far. Tensors, numbers, strings and lists/tuples/dicts of them travel by
           value; any other object stays here and travels as a handle {"__ref__": n}.
It also installs the refusals: an import hook that refuses the reference implementations of the notebook's graded
components (and transformers), and stand-ins that raise for calls a task forbids (e.g. fused attention).
Not here: judging (the checks), running the kernel (runner.py). Only the standard library and torch are used.
"""
import builtins
import importlib.abc
import importlib.machinery
import signal
import sys
import traceback
import types

REFUSED = []                      # one line per refused import or call, in order


class Refusal(ImportError):
    pass


class Guard(importlib.abc.MetaPathFinder):
    """Refuses imports of the modules in `refused` (and their submodules); stubs the `minigemma` packages."""

    def __init__(self, refused, package_dir):
        self.refused, self.package_dir = tuple(refused), package_dir

    def find_spec(self, name, path=None, target=None):
        if any(name == r or name.startswith(r + ".") for r in self.refused):
            REFUSED.append(f"import of {name} (a reference implementation is not allowed while grading)")
            raise Refusal(f"refused while grading: import {name}")
        if name in ("minigemma", "minigemma.grading"):
            return importlib.machinery.ModuleSpec(name, StubLoader(self.package_dir), is_package=True)
        return None


class StubLoader(importlib.abc.Loader):
    """`minigemma` and `minigemma.grading` without their __init__: submodules still load one by one."""

    def __init__(self, package_dir):
        self.package_dir = package_dir

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        sub = module.__name__.split(".")[1:]
        module.__path__ = ["/".join([self.package_dir] + sub)]
        module.__getattr__ = grading_attribute if module.__name__ == "minigemma.grading" else package_attribute


EXPORTS = {}


def package_attribute(name):
    if name not in EXPORTS:                          # minigemma.rope and the like: an import, guarded
        import importlib
        try:
            return importlib.import_module(f"minigemma.{name}")
        except Refusal:
            raise
        except ImportError:
            raise AttributeError(name) from None
    return getattr(__import__(EXPORTS[name], fromlist=[name]), name)


def grading_attribute(name):
    if name in ("toy_processor", "piece_scores"):
        from minigemma.grading import toy_tokenizer
        return getattr(toy_tokenizer, name)
    if name.startswith("check_"):
        def placeholder(*args, **kwargs):
            print(f"{name}: checks run in the grader while grading, not in this kernel.")
        return placeholder
    raise AttributeError(name)


def forbid(dotted, reason):
    """Replace the function at `dotted` (e.g. torch.nn.functional.scaled_dot_product_attention) by one that refuses."""
    module_name, _, attr = dotted.rpartition(".")
    module = sys.modules.get(module_name) or __import__(module_name, fromlist=[attr])

    def refused(*args, **kwargs):
        REFUSED.append(f"call to {dotted} ({reason})")
        raise RuntimeError(f"refused while grading: {dotted} ({reason})")
    setattr(module, attr, refused)


def install(refused, package_dir, forbidden, exports):
    """Guard the imports; `exports` maps names of the real minigemma/__init__ to their modules (imported lazily)."""
    EXPORTS.update(exports)
    sys.meta_path.insert(0, Guard(refused, package_dir))
    import torch                                              # noqa: F401  (so that torch's functions can be forbidden)
    for dotted, reason in forbidden:
        forbid(dotted, reason)


HANDLES = {}
TIME_LIMIT = [20.0]


class ProbeTimeout(BaseException):
    pass


def is_data(value):
    import torch
    if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.Size)):
        return True
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_data(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, (str, int)) and is_data(v) for k, v in value.items())
    return False


def encode(value):
    """Data by value (plain tensors, detached), anything else as a handle."""
    import torch
    if isinstance(value, torch.Tensor):
        return value.detach().as_subclass(torch.Tensor).clone()
    if type(value) in (list, tuple) and is_data(value):
        return type(value)(encode(v) for v in value)
    if isinstance(value, dict) and is_data(value):             # OrderedDict (a state_dict) too
        return {k: encode(v) for k, v in value.items()}
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, (torch.dtype, torch.Size)):
        return tuple(value) if isinstance(value, torch.Size) else value
    HANDLES[len(HANDLES) + 1] = value
    module = isinstance(value, torch.nn.Module)
    return {"__ref__": len(HANDLES), "type": type(value).__name__, "callable": callable(value), "module": module}


def decode(value):
    if isinstance(value, dict) and set(value) == {"__ref__"}:
        return HANDLES[value["__ref__"]]
    if type(value) in (list, tuple):
        return type(value)(decode(v) for v in value)
    if type(value) is dict:
        return {k: decode(v) for k, v in value.items()}
    return value


def learner_line(err):
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if "site-packages" not in f.filename and f.filename != __file__ and "<probe>" not in f.filename]
    return f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""


def perform(request, namespace):
    op = request["op"]
    if op == "lookup":
        if request["name"] not in namespace:
            raise NameError(f"name {request['name']!r} is not defined")
        return namespace[request["name"]]
    target = HANDLES[request["ref"]]
    if op == "call":
        return target(*decode(request["args"]), **decode(request["kwargs"]))
    if op == "getattr":
        return getattr(target, request["name"])
    if op == "setattr":
        return setattr(target, request["name"], decode(request["value"]))
    if op == "list":
        return list(target)
    raise ValueError(f"unknown probe operation {op!r}")


def serve(request_path, response_path, namespace=None):
    import torch
    namespace = namespace if namespace is not None else sys.modules["__main__"].__dict__
    request = torch.load(request_path, weights_only=False)      # written by the grader, not by the learner

    def on_alarm(signum, frame):
        raise ProbeTimeout()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, request.get("time_limit", TIME_LIMIT[0]))
    try:
        with torch.no_grad():
            response = {"ok": encode(perform(request, namespace))}
    except ProbeTimeout:
        response = {"error": {"type": "Timeout", "message": "", "where": ""}}
    except BaseException as err:                   # the learner's code failed (or was interrupted): say how
        response = {"error": {"type": type(err).__name__, "message": str(err), "where": learner_line(err)}}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    response["refused"] = list(REFUSED)
    torch.save(response, response_path)


builtins.__minigemma_probe__ = types.SimpleNamespace(serve=serve, install=install)
