// Blackbox declarations of the SRAM timing stubs (see sram_stub_map.v and sram_stub.liberty).
(* blackbox, keep *)
module spk_sram_q (input CLK, output Q);
endmodule
(* blackbox, keep *)
module spk_sram_d (input CLK, input D);
endmodule
