# Stage 'reminder': see its issue. Registers its metrics and figures in REPORT_METRICS / REPORT_FIGURES when stage_active("reminder").
