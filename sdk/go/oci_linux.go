package airlock

import "syscall"

const syscallNoFollow = syscall.O_NOFOLLOW
