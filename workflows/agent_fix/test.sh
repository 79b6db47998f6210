#!/bin/sh
# The test suite of calc.sh: exits 1 and names each failing case.
fail=0
check() {
  got=$(sh ./calc.sh "$1" "$2" "$3")
  if [ "$got" != "$4" ]; then
    echo "FAIL: calc.sh $1 $2 $3 printed $got, expected $4" >&2
    fail=1
  fi
}
check add 2 3 5
check add 10 -4 6
check mul 2 3 6
[ "$fail" = 0 ] && echo "all tests pass"
exit "$fail"
