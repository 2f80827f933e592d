export const APP_PLACEHOLDER = true;
