classdef NSessions < scistack.BaseVariable
end
