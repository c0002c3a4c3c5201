/** The address of a VM's page. */
export const vmHref = (vm: { source: string; name: string }) => `/vms/${encodeURIComponent(vm.source)}/${encodeURIComponent(vm.name)}`;
