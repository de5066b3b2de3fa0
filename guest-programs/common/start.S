/* Ferry guest start-up: stack, .bss, boot registers, trap vector, main(). */
  .section .text.init, "ax", @progbits
  .globl _start
_start:
  la    sp, _stack_top
  mv    s0, a0                  /* hart id */
  mv    s1, a1                  /* boot-arg string (Ferry) or FDT (QEMU) */
  /* zero .bss (start and end are 16-byte aligned) */
  la    t0, __bss_start
  la    t1, __bss_end
1:
  bgeu  t0, t1, 2f
  sw    zero, 0(t0)
  addi  t0, t0, 4
  j     1b
2:
  la    t0, ferry_hartid
  sw    s0, 0(t0)
  la    t0, ferry_boot_a1
  sw    s1, 0(t0)
  la    t0, trap_entry
  csrw  mtvec, t0
  csrw  mie, zero
  mv    a0, s0
  mv    a1, s1
  call  main
  call  poweroff                /* exit code = main's return value */
3:
  wfi
  j     3b

/* Trap entry (direct mode): save caller-saved registers, call
   trap_handler(mcause, mepc, mtval), restore, mret. */
  .align 4
  .globl trap_entry
trap_entry:
  addi  sp, sp, -64
  sw    ra,  0(sp)
  sw    t0,  4(sp)
  sw    t1,  8(sp)
  sw    t2, 12(sp)
  sw    a0, 16(sp)
  sw    a1, 20(sp)
  sw    a2, 24(sp)
  sw    a3, 28(sp)
  sw    a4, 32(sp)
  sw    a5, 36(sp)
  sw    a6, 40(sp)
  sw    a7, 44(sp)
  sw    t3, 48(sp)
  sw    t4, 52(sp)
  sw    t5, 56(sp)
  sw    t6, 60(sp)
  csrr  a0, mcause
  csrr  a1, mepc
  csrr  a2, mtval
  call  trap_handler
  lw    ra,  0(sp)
  lw    t0,  4(sp)
  lw    t1,  8(sp)
  lw    t2, 12(sp)
  lw    a0, 16(sp)
  lw    a1, 20(sp)
  lw    a2, 24(sp)
  lw    a3, 28(sp)
  lw    a4, 32(sp)
  lw    a5, 36(sp)
  lw    a6, 40(sp)
  lw    a7, 44(sp)
  lw    t3, 48(sp)
  lw    t4, 52(sp)
  lw    t5, 56(sp)
  lw    t6, 60(sp)
  addi  sp, sp, 64
  mret

  .section .data
  .align 2
  .globl ferry_hartid
ferry_hartid:
  .word 0
  .globl ferry_boot_a1
ferry_boot_a1:
  .word 0
