# Git workload run under the preloaded allocator: init, add, commit, branch,
# merge, repack, fsck and object inspection in a throw-away repository.
# Author, committer and dates are fixed, so every object id is deterministic;
# the output is compared with git_workload.expected.
#
# Usage: bash git_workload.sh GIT WORKDIR   (WORKDIR: an empty directory)
set -euo pipefail

GIT_BIN=$1
WORKDIR=$2
git() { "$GIT_BIN" "$@"; }

# Isolation: no system/global configuration is read or written, and nothing
# inherited from a surrounding repository (e.g. when run from a git hook).
export HOME=$WORKDIR
export GIT_CONFIG_NOSYSTEM=1
export GIT_CONFIG_GLOBAL=/dev/null
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_CEILING_DIRECTORIES
export GIT_CEILING_DIRECTORIES=$WORKDIR
export TZ=UTC LC_ALL=C

repo=$WORKDIR/repo
mkdir "$repo"
cd "$repo"
git init -q -b main
git config user.name "Bitslab Test"
git config user.email "bitslab-test@example.invalid"
git config commit.gpgsign false
git config core.autocrlf false

timestamp=1700000000
commit() {  # commit -m MESSAGE [more git-commit args], with a fixed date
  timestamp=$((timestamp + 60))
  GIT_AUTHOR_DATE="$timestamp +0000" GIT_COMMITTER_DATE="$timestamp +0000" git commit -q "$@"
}

# Initial tree: 200 files in 10 directories.
for d in $(seq 0 9); do
  mkdir -p "src/dir$d"
  for f in $(seq 0 19); do
    for line in $(seq 1 $((10 + f))); do echo "dir $d file $f line $line"; done > "src/dir$d/file$f.txt"
  done
done
git add -A
commit -m "initial import"

# Ten more commits, each touching a few files.
for c in $(seq 1 10); do
  echo "change $c" >> "src/dir$((c % 10))/file$((c % 20)).txt"
  echo "new file $c" > "src/dir$((c % 10))/added$c.txt"
  git add -A
  commit -m "change number $c"
done

# A branch, merged back with a merge commit.
git checkout -q -b feature
for c in 1 2 3; do
  echo "feature $c" > "src/feature$c.txt"
  git add -A
  commit -m "feature $c"
done
git checkout -q main
echo "main after branch" >> src/dir0/file0.txt
git add -A
commit -m "main moves on"
timestamp=$((timestamp + 60))
GIT_AUTHOR_DATE="$timestamp +0000" GIT_COMMITTER_DATE="$timestamp +0000" \
  git merge -q --no-ff -m "merge feature" feature

echo "commits: $(git log --oneline | wc -l)"
echo "first-parent commits: $(git log --oneline --first-parent | wc -l)"
echo "HEAD: $(git rev-parse HEAD)"
echo "HEAD type: $(git cat-file -t HEAD)"
echo "HEAD parents: $(git cat-file -p HEAD | grep -c '^parent ')"
echo "tree of HEAD: $(git rev-parse 'HEAD^{tree}')"
echo "blob size: $(git cat-file -s HEAD:src/dir3/file19.txt)"
echo "blob tail: $(git cat-file -p HEAD:src/dir0/file0.txt | tail -n 1)"
echo "files: $(git ls-files | wc -l)"
git log --format='%h %s' -n 4
git diff --stat HEAD~4 HEAD | tail -n 1
echo "grep hits: $(git grep -c 'line 7$' | wc -l)"

# Repack everything (pack-objects is multi-threaded) and verify the store.
git -c pack.threads=2 repack -a -d -q
git fsck --strict --no-progress
echo "loose objects after repack: $(git count-objects -v | sed -n 's/^count: //p')"
echo "packed objects: $(git count-objects -v | sed -n 's/^in-pack: //p')"
echo "HEAD after repack: $(git rev-parse HEAD)"
