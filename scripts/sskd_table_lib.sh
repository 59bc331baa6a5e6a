# Shared by the SSKD table launchers (sourced; the launcher sets TABLE, PAIRS and the variables
# below before sourcing). Trains every needed teacher with the reference recipe, then one experiment
# folder per (pair, method, seed) cell; DRY_RUN=1 only prints the commands.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# paper row -> our --method
declare -A METHOD_OF=([student]=ce [KD]=kd [FitNet]=hint [AT]=attention [SP]=similarity [VID]=vid [RKD]=rkd
                      [PKT]=pkt [AB]=abound [FT]=factor [CRD]=crd [SSKD]=sskd)

FAILED=()
run() {   # print the command; run it unless DRY_RUN=1. A failed cell is reported and the table goes on.
    echo "$*"
    if [ "${DRY_RUN:-0}" != "1" ]; then
        "$@" || { local rc=$?; echo "cell failed (exit $rc): $*" >&2; FAILED+=("$*"); }
    fi
}

for row in $ROWS; do
    if [ -z "${METHOD_OF[$row]:-}" ]; then
        echo "error: ROWS: unknown row '$row' (rows: ${!METHOD_OF[*]})" >&2; exit 2
    fi
done
for pair in $PAIRS; do
    case "$pair" in
        ?*:?*) ;;
        *) echo "error: PAIRS: '$pair' is not teacher:student (e.g. resnet56:resnet20)" >&2; exit 2 ;;
    esac
done

if [ "${DRY_RUN:-0}" = "1" ]; then PY=${PY:-python}; else source scripts/python_env.sh; fi
if [ -n "${GPU:-}" ]; then export CUDA_VISIBLE_DEVICES=$GPU; fi
DATA=(--dataset cifar100 --data-root "$DATA_ROOT")
[ "${DOWNLOAD:-0}" = "1" ] && DATA+=(--download)
OUT="$SAVE_DIR/$TABLE"

teacher_ckpt() {   # path of the teacher checkpoint a student uses
    local arch=$1
    if [ -n "${PRETRAINED_TEACHERS:-}" ] && [ -f "$PRETRAINED_TEACHERS/${arch}_vanilla/ckpt_epoch_240.pth" ]; then
        echo "$PRETRAINED_TEACHERS/${arch}_vanilla/ckpt_epoch_240.pth"   # RepDistiller's released teachers
    else
        echo "$OUT/teachers/${arch}_seed${TEACHER_SEED}/ckpt/${TEACHER_CKPT}.pth"
    fi
}

# 1. teachers (skipped when released weights are given or the run already finished)
declare -A DONE=()
for pair in $PAIRS; do
    t=${pair%%:*}
    [ -n "${DONE[$t]:-}" ] && continue
    DONE[$t]=1
    [ -n "${PRETRAINED_TEACHERS:-}" ] && [ -f "$PRETRAINED_TEACHERS/${t}_vanilla/ckpt_epoch_240.pth" ] && continue
    folder="$OUT/teachers/${t}_seed${TEACHER_SEED}"
    [ -f "$folder/summary.json" ] && continue
    resume=(); [ -f "$folder/ckpt/last.pth" ] && resume=(--resume)
    run "$PY" train_teacher.py "${DATA[@]}" --arch "$t" --epochs "$EPOCHS" --seed "$TEACHER_SEED" \
        --save-dir "$OUT/teachers" --name "${t}_seed${TEACHER_SEED}" ${resume[@]+"${resume[@]}"} $EXTRA_ARGS
done

# 2. one folder per cell
for pair in $PAIRS; do
    t=${pair%%:*}; s=${pair##*:}
    for row in $ROWS; do
        method=${METHOD_OF[$row]}
        weights=()
        case "$row" in
            student|KD|SSKD) ;;                           # the method's own standard weights
            CRD) weights=(-r 1 -a 1 -b 0.8) ;;            # CRD+KD, as the SSKD table
            *) if [ "$BASELINES" = "plus_kd" ]; then weights=(-r 1 -a "$KD_WEIGHT"); else weights=(-r 1 -a 0); fi ;;
        esac
        for seed in $SEEDS; do
            folder="$OUT/${t}_to_${s}/${row}_seed${seed}"
            [ -f "$folder/summary.json" ] && continue
            resume=(); [ -f "$folder/ckpt/last.pth" ] || [ -f "$folder/ckpt/init.pth" ] && resume=(--resume)
            run "$PY" train_student.py "${DATA[@]}" --method "$method" --teacher "$(teacher_ckpt "$t")" \
                --student "$s" ${weights[@]+"${weights[@]}"} --epochs "$EPOCHS" --seed "$seed" \
                --save-dir "$OUT/${t}_to_${s}" --name "${row}_seed${seed}" --init-cache "$OUT/init_cache" \
                ${resume[@]+"${resume[@]}"} $EXTRA_ARGS $STUDENT_ARGS
        done
    done
done

# 3. the table, with the published numbers and the difference
run "$PY" scripts/make_table.py --runs "$OUT" --paper "$TABLE" --metric "$METRIC"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "${#FAILED[@]} cell(s) failed; their logs are in their run folders. Run the launcher again to retry them." >&2
    exit 1
fi
