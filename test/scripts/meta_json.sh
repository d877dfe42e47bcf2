#!/bin/bash
# META.json against the PGXN Meta Spec 1.0.0 (https://pgxn.org/meta/spec.txt) and against the
# build: its version is the control file's default_version and its install script is the
# one the Makefile installs. Needs only python3 and make (no database). TAP output; exits 0
# even when a test is "not ok", non-zero only if the script itself cannot run.
set -uo pipefail
cd "$(dirname "$0")/../.."
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

[ -f META.json ] || { echo "not ok 1 - META.json exists"; echo "1..1"; exit 0; }
python3 -m json.tool META.json > /dev/null 2> "${TMPDIR:-/tmp}/meta_json.$$"
ok $? "META.json is valid JSON (python3 -m json.tool)"
sed 's/^/# /' "${TMPDIR:-/tmp}/meta_json.$$"; rm -f "${TMPDIR:-/tmp}/meta_json.$$"

control_version=$(sed -nE "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'([^']*)'.*/\1/p" personalize.control)
[ -n "$control_version" ] || { echo "Bail out! no default_version in personalize.control"; exit 2; }
mk=$(mktemp)
trap 'rm -f "$mk"' EXIT
printf 'meta-json-print-data:\n\t@echo $(DATA) $(DATA_built)\n' > "$mk"
make_data=$(make -s --no-print-directory -f Makefile -f "$mk" meta-json-print-data 2>/dev/null) \
  || { echo "Bail out! cannot read DATA from the Makefile"; exit 2; }
echo "# personalize.control default_version: $control_version; Makefile DATA: $make_data"

# the rules of the spec, checked one by one; prints "ok|description" or "not ok|description"
checks=$(mktemp)
trap 'rm -f "$mk" "$checks"' EXIT
cat > "$checks" <<'PY'
import json, os, re

meta = json.load(open("META.json"))
cv, data = os.environ["CONTROL_VERSION"], os.environ["MAKE_DATA"].split()

SEMVER = (r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
          r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
          r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?")
OP = r"(?:(?:[=!]=|[<>]=?)\s*)?"
RANGE = re.compile(rf"^{OP}(?:{SEMVER}|0)(?:,\s*{OP}{SEMVER})*$")
TERM = re.compile(r"^[^/\\\s\x00-\x1f\x7f]{2,}$")
TAG = re.compile(r"^[^/\\\x00-\x1f\x7f]{2,255}$")
LICENSES = set("""agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2
    gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5 postgresql qpl_1_0 ssleay sun zlib
    open_source restricted unrestricted unknown""".split())
URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

def semver(v): return isinstance(v, str) and re.fullmatch(SEMVER, v) is not None
def custom(k): return re.match(r"^[xX]_.", k) is not None
def only(d, keys): return isinstance(d, dict) and all(k in keys or custom(k) for k in d)
def path(p): return isinstance(p, str) and len(p) >= 2 and not p.startswith("/") and "\\" not in p and ".." not in p.split("/")
def report(cond, desc): print(("ok" if cond else "not ok") + "|" + desc)

required = ["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"]
known = required + ["description", "generated_by", "tags", "no_index", "prereqs", "release_status", "resources"]
report(all(k in meta for k in required), "the mandatory keys are there: " + ", ".join(required))
report(only(meta, known), "no top-level key outside the spec (custom keys start with x_)")
ms = meta.get("meta-spec", {})
report(only(ms, ["version", "url"]) and ms.get("version") == "1.0.0"
       and ms.get("url", "https://pgxn.org/meta/spec.txt") in ("https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"),
       'meta-spec is {"version": "1.0.0", "url": "https://pgxn.org/meta/spec.txt"}')
report(meta.get("name") == "personalize" and TERM.match(meta.get("name", "")) is not None, "name is personalize, a valid term")
report(semver(meta.get("version")), "version is a semantic version")
report(meta.get("version") == cv, f"version equals default_version in personalize.control ({cv})")
report(isinstance(meta.get("abstract"), str) and len(meta["abstract"].strip()) > 0, "abstract is a non-empty string")
m = meta.get("maintainer")
report((isinstance(m, str) and m) or (isinstance(m, list) and m and all(isinstance(x, str) and x for x in m)),
       "maintainer is a non-empty string or list of strings")
lic = meta.get("license")
report(lic == "postgresql", 'license is "postgresql" (a license key the spec knows)')
report((isinstance(lic, str) and lic in LICENSES) or (isinstance(lic, list) and lic and all(l in LICENSES for l in lic))
       or (isinstance(lic, dict) and lic and all(isinstance(u, str) and URI.match(u) for u in lic.values())),
       "license has one of the three forms the spec allows")

prov = meta.get("provides", {})
report(isinstance(prov, dict) and len(prov) >= 1 and all(TERM.match(k) for k in prov), "provides names at least one extension, each a valid term")
report(all(only(e, ["file", "version", "abstract", "docfile", "docpath"]) and "file" in e and "version" in e
           and path(e["file"]) and semver(e["version"]) and path(e.get("docfile", "xx")) for e in prov.values()),
       "every provided extension has a relative file and a semantic version, and no unknown key")
p = prov.get("personalize", {})
report(p.get("version") == cv, f"provides.personalize.version equals default_version ({cv})")
install = [d for d in data if re.fullmatch(r"(?:.*/)?personalize--[^-]+(?:-[^-]+)*\.sql", d) and "--" not in d.split("personalize--", 1)[1]]
report(p.get("file") == f"sql/personalize--{cv}.sql" and p.get("file") in install,
       f"provides.personalize.file is sql/personalize--{cv}.sql, the install script the Makefile installs (DATA or DATA_built)")
report(os.path.isfile(p.get("file", "")), "provides.personalize.file exists")
report(p.get("docfile") == "README.md" and os.path.isfile("README.md"), "provides.personalize.docfile is README.md and it exists")

pre = meta.get("prereqs", {})
phases_ok = only(pre, ["configure", "build", "test", "runtime", "develop"]) and len(pre) >= 1
for ph in pre.values():
    if not (only(ph, ["requires", "recommends", "suggests", "conflicts"]) and len(ph) >= 1):
        phases_ok = False; continue
    for rel in ph.values():
        if not (isinstance(rel, dict) and rel and all(TERM.match(k) and (v == 0 or (isinstance(v, str) and RANGE.match(v))) for k, v in rel.items())):
            phases_ok = False
report(phases_ok, "prereqs: known phases and relationships, each prerequisite a term with a valid version range")
report(pre.get("runtime", {}).get("requires", {}).get("PostgreSQL") == "15.0.0", "prereqs: runtime requires PostgreSQL 15.0.0")
report("pg_cron" in pre.get("runtime", {}).get("recommends", {}) and "pg_cron" not in pre.get("runtime", {}).get("requires", {}),
       "prereqs: runtime recommends pg_cron and does not require it")

tags = meta.get("tags")
report(isinstance(tags, list) and len(tags) >= 1 and all(isinstance(t, str) and TAG.match(t) for t in tags)
       and len(set(tags)) == len(tags), "tags: a non-empty list of distinct tags of 2-255 characters without slash, backslash or control characters")
report(meta.get("release_status") == "unstable", 'release_status is "unstable" (one of stable, testing, unstable)')

res = meta.get("resources")
bt, repo = (res or {}).get("bugtracker"), (res or {}).get("repository")
report(isinstance(res, dict) and len(res) >= 1 and only(res, ["homepage", "bugtracker", "repository"])
       and ("homepage" not in res or URI.match(res["homepage"]))
       and (bt is None or (only(bt, ["web", "mailto"]) and ("web" in bt or "mailto" in bt)
                           and ("web" not in bt or URI.match(bt["web"])) and ("mailto" not in bt or EMAIL.match(bt["mailto"]))))
       and (repo is None or (only(repo, ["url", "web", "type"]) and (("url" in repo and "type" in repo) or "web" in repo))),
       "resources: homepage, bugtracker (web or mailto), repository (url and type, or web), nothing else")
ni = meta.get("no_index")
report(ni is None or (only(ni, ["file", "directory"]) and ("file" in ni or "directory" in ni)
       and all((path(v) or (isinstance(v, list) and v and all(path(x) for x in v))) for v in ni.values())),
       "no_index, if present, lists relative files or directories")
report(all(isinstance(meta.get(k, "x"), str) and meta.get(k, "x").strip() for k in ("description", "generated_by")),
       "description and generated_by, if present, are non-empty strings")
PY
while IFS='|' read -r status desc; do
  ok "$([ "$status" = ok ] && echo 0 || echo 1)" "$desc"
done < <(CONTROL_VERSION=$control_version MAKE_DATA=$make_data python3 "$checks" || echo "not ok|the checks ran to the end")
echo "1..$n"
exit 0
