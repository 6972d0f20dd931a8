/* A QEMU TCG plugin that counts the guest instructions a program executes, printed to stderr at
 * exit as "insns: N". The equivalent of QEMU's tests/plugin/insn.c (inline mode) without glib, so
 * it builds with a C compiler and QEMU's include/qemu/qemu-plugin.h alone; build_insn_count.sh
 * takes that header from the source of the installed QEMU's version (the plugin API is
 * versioned). The count is exact and repeatable: each translated block adds its instruction count
 * each time it runs. Counts are summed over guest threads without atomics, so count
 * single-threaded programs. */
#include <inttypes.h>
#include <stdio.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t insn_count;

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count, qemu_plugin_tb_n_insns(tb));
}

static void at_exit(qemu_plugin_id_t id, void *data) {
    (void)id;
    (void)data;
    fprintf(stderr, "insns: %" PRIu64 "\n", insn_count);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
